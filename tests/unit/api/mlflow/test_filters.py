"""MLflow's search syntax read into loopml's run search spec; what cannot be answered is
refused with a message, never ignored."""

from __future__ import annotations

import pytest

from loopml.api.mlflow.filters import parse_filter, parse_order
from loopml.core.errors import ValidationError
from loopml.core.run_search import (
    AttributeOrder,
    KeyOrder,
    MetricFilter,
    NameFilter,
    TextFilter,
)


def test_clauses_joined_by_and_become_typed_filters() -> None:
    out = parse_filter(
        'metrics.acc >= 0.9 AND params.model = \'lgbm\' and tags."team name" != "risk"'
    )
    assert out.filters == [
        MetricFilter(kind="metric", key="acc", op=">=", value=0.9),
        TextFilter(kind="param", key="model", op="=", value="lgbm"),
        TextFilter(kind="tag", key="team name", op="!=", value="risk"),
    ]
    assert not out.matches_nothing


def test_backticked_keys_numbers_and_prefix_aliases() -> None:
    out = parse_filter("metric.`val/loss` < -1.5e-3 and parameter.lr = '0.1'")
    assert out.filters[0] == MetricFilter(kind="metric", key="val/loss", op="<", value=-1.5e-3)
    assert out.filters[1] == TextFilter(kind="param", key="lr", op="=", value="0.1")


def test_status_and_run_id_attributes() -> None:
    out = parse_filter("attributes.status IN ('FINISHED', 'FAILED') and status != 'FAILED'")
    assert out.status == ["FINISHED"]
    ids = ["a" * 32, "b" * 32]
    assert parse_filter(f"attributes.run_id IN ('{ids[0]}', '{ids[1]}')").run_ids == ids
    assert parse_filter("status = 'FINISHED' and status = 'KILLED'").matches_nothing


def test_params_and_tags_take_like_and_ilike() -> None:
    found = parse_filter("params.model LIKE 'lg%' and tags.team ilike 'R_sk'").filters
    assert [(f.kind, f.key, f.op, f.value) for f in found] == [
        ("param", "model", "LIKE", "lg%"),
        ("tag", "team", "ILIKE", "R_sk"),
    ]


def test_empty_filter_is_everything() -> None:
    assert parse_filter(None).filters == []
    assert parse_filter("   ").status == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("metrics.acc LIKE '0.9%'", "LIKE is not supported on metrics"),
        ("metrics.acc > 0.9 OR metrics.acc < 0.1", "OR is not supported"),
        ("metrics.acc > 'high'", "compared with a number"),
        ("params.lr = 0.1", "quoted string"),
        ("attributes.start_time > 1.5", "whole milliseconds"),
        ("attributes.start_time < 253402300799999", "whole milliseconds"),
        ("attributes.end_time LIKE '1%'", "compared (= != < <= > >=) with a number"),
        ("datasets.name = 'x'", "unknown entity"),
        ("metrics.acc >", "expected a number"),
        ("metrics.acc = 1 ; drop table runs", "cannot read"),
        ("metrics.`a\nb` > 1", "should match pattern"),
        ("status = 'DONE'", "unknown status"),
    ],
)
def test_what_loopml_cannot_answer_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValidationError, match="unsupported search filter") as info:
        parse_filter(text)
    assert why in info.value.message
    assert "Supported:" in info.value.message


def test_order_by_keys_and_attributes() -> None:
    orders = parse_order(["metrics.acc DESC", "params.lr", "attributes.run_name asc"])
    assert orders == [
        KeyOrder(kind="metric", key="acc", descending=True),
        KeyOrder(kind="param", key="lr", descending=False),
        AttributeOrder(kind="attribute", key="name", descending=False),
    ]
    assert parse_order(["start_time DESC"]) == [
        AttributeOrder(kind="attribute", key="start_time", descending=True)
    ]


@pytest.mark.parametrize("item", ["attributes.artifact_uri", "nope.acc DESC", "metrics.a\x00b"])
def test_bad_order_by_is_refused(item: str) -> None:
    with pytest.raises(ValidationError, match="unsupported order_by"):
        parse_order([item])


def test_the_run_name_is_an_attribute_and_the_run_name_tag() -> None:
    out = parse_filter(
        "tags.mlflow.runName = 'r007' and tags.`mlflow.runName` != 'x' "
        "and attributes.run_name LIKE 'r%' and run_name ILIKE 'R0%'"
    )
    assert out.filters == [
        NameFilter(kind="name", op="=", value="r007"),
        NameFilter(kind="name", op="!=", value="x"),
        NameFilter(kind="name", op="LIKE", value="r%"),
        NameFilter(kind="name", op="ILIKE", value="R0%"),
    ]
    with pytest.raises(ValidationError, match="run's name takes"):
        parse_filter("attributes.run_name > 'r'")
