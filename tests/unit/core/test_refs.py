"""ModelRef: the grammar, its limits and the round trip."""

from __future__ import annotations

import pytest

from loopml.core.errors import ValidationError
from loopml.core.refs import MAX_REF_LENGTH, ModelRef, validate_alias, validate_model_name


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("churn", ("churn", None, None, None)),
        ("churn/3", ("churn", None, 3, None)),
        ("churn@champion", ("churn", None, None, "champion")),
        ("fraud:churn@champion", ("churn", "fraud", None, "champion")),
        ("p-1:m_2/999999999", ("m_2", "p-1", 999999999, None)),
        ("a" * 63 + ":" + "b" * 63 + "@" + "c" * 63, ("b" * 63, "a" * 63, None, "c" * 63)),
    ],
)
def test_parse_and_round_trip(text: str, parts: tuple[object, ...]) -> None:
    ref = ModelRef.parse(text)
    assert (ref.name, ref.project, ref.version, ref.alias) == parts
    assert str(ref) == text
    assert ModelRef.parse(str(ref)) == ref


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Churn",
        "churn/0",
        "churn/03",
        "churn/1000000000",
        "churn/-1",
        "churn@",
        "churn@Champion",
        "churn/3@champion",
        "churn@champion/3",
        "a:b:c",
        ":churn",
        "churn/",
        "../churn",
        "churn/../../etc",
        "churn\n",
        " churn",
        "churn@x;rm -rf /",
        "<img src=x onerror=alert(1)>",
        "a" * 64,
        "churn@" + "a" * 64,
        "x" * 10_000_000,
    ],
)
def test_bad_refs_are_refused_with_the_grammar(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        ModelRef.parse(text)
    message = err.value.message
    assert "invalid model reference" in message
    assert "churn@champion" in message or f"at most {MAX_REF_LENGTH}" in message
    assert len(message) < 600


def test_version_and_alias_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="not both"):
        ModelRef(name="churn", version=1, alias="champion")


def test_hand_built_refs_are_validated() -> None:
    with pytest.raises(ValidationError, match="model name"):
        ModelRef(name="Bad Name")
    with pytest.raises(ValidationError, match="version"):
        ModelRef(name="churn", version=0)
    with pytest.raises(ValidationError, match="project name"):
        ModelRef(name="churn", project="../x")


def test_in_project_qualifies_only_unqualified_refs() -> None:
    assert str(ModelRef.parse("churn/2").in_project("fraud")) == "fraud:churn/2"
    assert str(ModelRef.parse("risk:churn").in_project("fraud")) == "risk:churn"
    assert ModelRef.parse("churn").is_latest
    assert not ModelRef.parse("churn@x").is_latest


def test_name_and_alias_validators() -> None:
    assert validate_model_name("churn-model") == "churn-model"
    assert validate_alias("champion") == "champion"
    with pytest.raises(ValidationError, match="lowercase letter"):
        validate_model_name("1x")
    with pytest.raises(ValidationError, match="for example 'champion'"):
        validate_alias("Champion")
