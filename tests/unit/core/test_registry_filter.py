"""MLflow's registered-model and model-version filter grammar, read into typed clauses; what
MLflow's server refuses is refused with a message."""

from __future__ import annotations

import pytest

from loopml.core.errors import ValidationError
from loopml.core.registry_filter import (
    RegistryClause,
    RegistryOrder,
    parse_registry_filter,
    parse_registry_order,
)


def test_the_clients_own_prompt_clause_and_names() -> None:
    text = "name LIKE 'churn%' AND tags.`mlflow.prompt.is_prompt` != 'true'"
    assert parse_registry_filter(text, "models") == [
        RegistryClause("attribute", "name", "LIKE", "churn%"),
        RegistryClause("tag", "mlflow.prompt.is_prompt", "!=", "true"),
    ]
    assert parse_registry_filter('attribute.name = "a b"', "models") == [
        RegistryClause("attribute", "name", "=", "a b")
    ]


@pytest.mark.parametrize(
    ("text", "clause"),
    [
        ("tags.team = 'risk'", RegistryClause("tag", "team", "=", "risk")),
        ("tag.team != 'risk'", RegistryClause("tag", "team", "!=", "risk")),
        ("tags.\"team x\" ilike 'R%'", RegistryClause("tag", "team x", "ILIKE", "R%")),
        ("tags.a.b LIKE '%'", RegistryClause("tag", "a.b", "LIKE", "%")),
        ("name <> 'x'", RegistryClause("attribute", "name", "!=", "x")),
    ],
)
def test_tags_and_comparators(text: str, clause: RegistryClause) -> None:
    assert parse_registry_filter(text, "models") == [clause]


def test_version_attributes() -> None:
    ids = ("a" * 32, "b" * 32)
    text = (
        f"name = 'churn' and run_id IN ('{ids[0]}', \"{ids[1]}\") and version_number >= 2 "
        "and source_path LIKE 'mlflow-artifacts:/runs/%' and tags.ok = 'yes'"
    )
    assert parse_registry_filter(text, "versions") == [
        RegistryClause("attribute", "name", "=", "churn"),
        RegistryClause("attribute", "run_id", "IN", ids),
        RegistryClause("attribute", "version_number", ">=", 2),
        RegistryClause("attribute", "source_path", "LIKE", "mlflow-artifacts:/runs/%"),
        RegistryClause("tag", "ok", "=", "yes"),
    ]


def test_no_filter_is_everything() -> None:
    assert parse_registry_filter(None, "models") == []
    assert parse_registry_filter("  ", "versions") == []


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
        parse_registry_filter(text, entity)  # type: ignore[arg-type]
    assert caught.value.details == {"field": "filter_string"}


def test_order_by() -> None:
    assert parse_registry_order(["name DESC", "creation_timestamp"], "models") == [
        RegistryOrder("name", True),
        RegistryOrder("creation_timestamp", False),
    ]
    assert parse_registry_order(["version_number asc"], "versions") == [
        RegistryOrder("version_number", False)
    ]
    for bad, entity in (("version_number", "models"), ("name sideways", "models")):
        with pytest.raises(ValidationError, match="invalid order_by"):
            parse_registry_order([bad], entity)  # type: ignore[arg-type]
