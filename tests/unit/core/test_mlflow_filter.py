"""MLflow's registered-model and model-version filter grammar, read into typed clauses; what
MLflow's server refuses is refused with a message."""

from __future__ import annotations

import pytest

from loopml.core.errors import ValidationError
from loopml.core.mlflow_filter import (
    FilterClause,
    FilterOrder,
    parse_mlflow_filter,
    parse_mlflow_order,
)


def test_the_clients_own_prompt_clause_and_names() -> None:
    text = "name LIKE 'churn%' AND tags.`mlflow.prompt.is_prompt` != 'true'"
    assert parse_mlflow_filter(text, "models") == [
        FilterClause("attribute", "name", "LIKE", "churn%"),
        FilterClause("tag", "mlflow.prompt.is_prompt", "!=", "true"),
    ]
    assert parse_mlflow_filter('attribute.name = "a b"', "models") == [
        FilterClause("attribute", "name", "=", "a b")
    ]


@pytest.mark.parametrize(
    ("text", "clause"),
    [
        ("tags.team = 'risk'", FilterClause("tag", "team", "=", "risk")),
        ("tag.team != 'risk'", FilterClause("tag", "team", "!=", "risk")),
        ("tags.\"team x\" ilike 'R%'", FilterClause("tag", "team x", "ILIKE", "R%")),
        ("tags.a.b LIKE '%'", FilterClause("tag", "a.b", "LIKE", "%")),
        ("name <> 'x'", FilterClause("attribute", "name", "!=", "x")),
    ],
)
def test_tags_and_comparators(text: str, clause: FilterClause) -> None:
    assert parse_mlflow_filter(text, "models") == [clause]


def test_version_attributes() -> None:
    ids = ("a" * 32, "b" * 32)
    text = (
        f"name = 'churn' and run_id IN ('{ids[0]}', \"{ids[1]}\") and version_number >= 2 "
        "and source_path LIKE 'mlflow-artifacts:/runs/%' and tags.ok = 'yes'"
    )
    assert parse_mlflow_filter(text, "versions") == [
        FilterClause("attribute", "name", "=", "churn"),
        FilterClause("attribute", "run_id", "IN", ids),
        FilterClause("attribute", "version_number", ">=", 2),
        FilterClause("attribute", "source_path", "LIKE", "mlflow-artifacts:/runs/%"),
        FilterClause("tag", "ok", "=", "yes"),
    ]


def test_no_filter_is_everything() -> None:
    assert parse_mlflow_filter(None, "models") == []
    assert parse_mlflow_filter("  ", "versions") == []


@pytest.mark.parametrize(
    ("text", "entity", "why"),
    [
        ("run_id = 'x'", "models", "invalid attribute key 'run_id'"),
        ("current_stage = 'None'", "versions", "invalid attribute key 'current_stage'"),
        ("params.x = '1'", "models", "invalid entity type 'params'"),
        ("name > 'a'", "models", "compared with = != LIKE ILIKE"),
        ("name = 3", "models", "compared with = != LIKE ILIKE"),
        ("version_number LIKE '1'", "versions", "an integer"),
        ("name IN ('a')", "versions", "only run_id IN"),
        ("run_id IN ('a')", "models", "invalid attribute key"),
        ("name = 'a' OR name = 'b'", "models", "OR is not supported"),
        ("name = 'a' AND", "models", "must follow AND"),
        ("name = ", "models", "expected a quoted string"),
        ("name = 'a", "models", "cannot read"),
        ("= 'a'", "models", "expected '<identifier>"),
        ("run_id IN ()", "versions", "a list is"),
    ],
)
def test_what_mlflow_refuses_is_refused(text: str, entity: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why) as caught:
        parse_mlflow_filter(text, entity)  # type: ignore[arg-type]
    assert caught.value.details == {"field": "filter_string"}


def test_order_by() -> None:
    assert parse_mlflow_order(["name DESC", "creation_timestamp"], "models") == [
        FilterOrder("name", True),
        FilterOrder("creation_timestamp", False),
    ]
    assert parse_mlflow_order(["version_number asc"], "versions") == [
        FilterOrder("version_number", False)
    ]
    for bad, entity in (("version_number", "models"), ("name sideways", "models")):
        with pytest.raises(ValidationError, match="invalid order_by"):
            parse_mlflow_order([bad], entity)  # type: ignore[arg-type]


def test_experiment_attributes() -> None:
    assert parse_mlflow_filter("name ILIKE '%churn%' and creation_time >= 5", "experiments") == [
        FilterClause("attribute", "name", "ILIKE", "%churn%"),
        FilterClause("attribute", "creation_time", ">=", 5),
    ]
    with pytest.raises(ValidationError, match="invalid attribute key 'run_id'"):
        parse_mlflow_filter("run_id = 'x'", "experiments")
    assert parse_mlflow_order(["last_update_time DESC"], "experiments") == [
        FilterOrder("last_update_time", True)
    ]
