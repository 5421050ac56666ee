"""The key validator alone: what it accepts, and the whole hostile corpus it refuses."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.core.errors import InvalidPathError
from loopml.core.keys import (
    KEY_PATTERN,
    MAX_DEPTH,
    MAX_KEY_LENGTH,
    PREFIX_PATTERN,
    join_key,
    validate_key,
    validate_prefix,
)
from tests.corpus import TRAVERSAL_KEYS

REFUSED = [
    *TRAVERSAL_KEYS,  # RELIABILITY.md appendix, "path components"
    # RELIABILITY item 1 and the brief
    "..\\..\\",
    "C:\\x",
    "C:x",
    "%00",
    "a//b",
    "./a",
    "a/.",
    "a/",
    ".loopml-tmp/x",
    ".loopml",
    # URIs are not keys
    "file:///etc/passwd",
    "http:///#/../../../../etc/",
    "mlflow-artifacts:/../../../etc",
    # odd characters and shapes
    "",
    " a",
    "a ",
    "a\nb",
    "a\tb",
    "a\x7fb",
    "a%0ab",
    "a*b",
    "a|b",
    "<img src=x>",
    "$(id)",
    "a%",
    "%25%25%25%25%25252e",
    "x" * (MAX_KEY_LENGTH + 1),
    "s" * 256,
    "/".join(["d"] * (MAX_DEPTH + 1)),
    # ASCII only: no look-alike letters, no two Unicode spellings of one name
    "données/été.csv",
    "модель/веса.bin",
    "模型/v1.bin",
    "cafe\u0301.txt",
]

ACCEPTED = {
    "a.txt": "a.txt",
    "reports/2026/eval.json": "reports/2026/eval.json",
    "model (1).onnx": "model (1).onnx",
    "a-b_c+d=e@f,g~h[1].txt": "a-b_c+d=e@f,g~h[1].txt",
    ".hidden": ".hidden",
    "reports%2Feval%20v1.json": "reports/eval v1.json",
    "/".join(["d"] * MAX_DEPTH): "/".join(["d"] * MAX_DEPTH),
}


@pytest.mark.parametrize(("raw", "normalized"), ACCEPTED.items())
def test_accepted_keys(raw: str, normalized: str) -> None:
    assert validate_key(raw) == normalized


@pytest.mark.parametrize("raw", REFUSED)
def test_refused_keys(raw: str) -> None:
    with pytest.raises(InvalidPathError, match=r"^Invalid path") as caught:
        validate_key(raw)

    assert caught.value.status == 400
    assert caught.value.code == "invalid_path"
    assert caught.value.details["reason"]


def test_refusal_says_what_was_expected() -> None:
    with pytest.raises(InvalidPathError, match="Expected a relative path"):
        validate_key("../x")


@pytest.mark.parametrize(("raw", "normalized"), [("", ""), ("/", ""), ("a", "a"), ("a/b/", "a/b/")])
def test_prefixes(raw: str, normalized: str) -> None:
    assert validate_prefix(raw) == normalized


@pytest.mark.parametrize("raw", ["../", "a//", "/etc/", "..%2f", ".loopml-tmp/"])
def test_refused_prefixes(raw: str) -> None:
    with pytest.raises(InvalidPathError, match=r"^Invalid path"):
        validate_prefix(raw)


def test_join_key() -> None:
    assert join_key("runs/", "/42", "", "model.onnx") == "runs/42/model.onnx"


@settings(max_examples=300, deadline=None)
@given(st.from_regex(KEY_PATTERN, fullmatch=True))
def test_every_key_the_published_pattern_admits_is_accepted(key: str) -> None:
    assert validate_key(key) == key


@settings(max_examples=200, deadline=None)
@given(st.from_regex(PREFIX_PATTERN, fullmatch=True))
def test_every_prefix_the_published_pattern_admits_is_accepted(prefix: str) -> None:
    validate_prefix(prefix)


@pytest.mark.parametrize("key", TRAVERSAL_KEYS)
def test_the_published_pattern_refuses_the_corpus(key: str) -> None:
    assert re.fullmatch(KEY_PATTERN, key) is None


# Mostly characters a key may hold, plus a few it may not, so that most draws sit near the
# boundary between accepted and refused instead of being refused for a stray '#'.
_NEAR_KEYS = st.text(alphabet="ab1._- /()[]~+=@,#?;:\\*", max_size=14)


@settings(max_examples=1000, deadline=None)
@given(_NEAR_KEYS)
def test_the_published_pattern_and_the_validator_agree(candidate: str) -> None:
    # Without '%' nothing decodes, so the pattern must admit exactly what the validator does.
    try:
        validate_key(candidate)
        accepted = True
    except InvalidPathError:
        accepted = False
    assert accepted == (re.fullmatch(KEY_PATTERN, candidate) is not None), candidate
