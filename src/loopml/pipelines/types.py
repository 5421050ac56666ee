"""The value types of pipeline inputs, step parameters and step outputs.

Values travel between steps as JSON. The typed references carry loopml's own reference
grammars, so a ``table`` is ``sales@3``, a ``dataset`` is ``churn_snap@2``, a ``codeset``
is ``trainer@3`` (or ``trainer``: its newest version when the step runs), a ``model`` is
``churn/4`` and a ``run`` is a training run's id. Types are checked twice: when a spec is
applied (literals, and what each reference will deliver) and when a step returns outputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from loopml.core.codesets import CODESET_REF_PATTERN
from loopml.core.datasets import DATASET_REF_PATTERN
from loopml.core.refs import LOCAL_REF_PATTERN, MAX_REF_LENGTH
from loopml.core.transforms import TABLE_VERSION_PATTERN


class ValueType(StrEnum):
    """What a value is. ``source`` is a table or one SQL ``SELECT`` (what a snapshot reads)."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    OBJECT = "object"
    LIST = "list"
    TABLE = "table"
    SOURCE = "source"
    DATASET = "dataset"
    CODESET = "codeset"
    MODEL = "model"
    RUN = "run"
    METRICS = "metrics"
    FILES = "files"
    ANY = "any"


REFERENCE_TYPES = frozenset(
    {
        ValueType.TABLE,
        ValueType.DATASET,
        ValueType.CODESET,
        ValueType.MODEL,
        ValueType.RUN,
        ValueType.SOURCE,
    }
)
"""Types whose values are text naming something in loopml."""
SCALAR_TYPES = REFERENCE_TYPES | {
    ValueType.STRING,
    ValueType.INTEGER,
    ValueType.NUMBER,
    ValueType.BOOLEAN,
}
"""Types that may be interpolated into a longer string (``FROM ${{ inputs.table }}``)."""

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_ACCEPTS: dict[ValueType, frozenset[ValueType]] = {
    ValueType.STRING: frozenset({ValueType.STRING}) | REFERENCE_TYPES,
    ValueType.NUMBER: frozenset({ValueType.NUMBER, ValueType.INTEGER}),
    ValueType.OBJECT: frozenset({ValueType.OBJECT, ValueType.METRICS}),
    ValueType.SOURCE: frozenset({ValueType.SOURCE, ValueType.TABLE, ValueType.STRING}),
    ValueType.LIST: frozenset({ValueType.LIST, ValueType.FILES}),
}


def accepts(expected: ValueType, given: ValueType) -> bool:
    """Whether a value of type ``given`` may fill a place that expects ``expected``."""
    if ValueType.ANY in (expected, given):
        return True
    return given == expected or given in _ACCEPTS.get(expected, frozenset())


def _text_problem(value: str, kind: ValueType) -> str | None:
    if len(value) > MAX_REF_LENGTH and kind != ValueType.SOURCE:
        return f"a {kind} reference is at most {MAX_REF_LENGTH} characters"
    if kind == ValueType.TABLE and not TABLE_VERSION_PATTERN.fullmatch(value):
        return "expected a table such as 'sales' or 'sales@3'"
    if kind == ValueType.DATASET and not DATASET_REF_PATTERN.fullmatch(value):
        return "expected a dataset version such as 'churn_snap', 'churn_snap@2' or '...@latest'"
    if kind == ValueType.CODESET and not CODESET_REF_PATTERN.fullmatch(value):
        return "expected a codeset such as 'trainer' (its newest version) or 'trainer@3'"
    if kind == ValueType.MODEL and not LOCAL_REF_PATTERN.fullmatch(value):
        return "expected a model version such as 'churn/3' or 'churn@champion'"
    if kind == ValueType.RUN and not _RUN_ID.fullmatch(value):
        return "expected a training run id (32 lowercase hex characters)"
    if kind == ValueType.SOURCE and not value.strip():
        return "expected a table ('sales', 'sales@3') or one SELECT over the project's tables"
    return None


def _number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return not (isinstance(value, float) and not math.isfinite(value))


def _check_integer(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok else f"expected an integer, got {value!r:.60}"


def _check_number(value: Any) -> str | None:
    return None if _number(value) else f"expected a finite number, got {value!r:.60}"


def _check_boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r:.60}"


def _check_metrics(value: Any) -> str | None:
    good = isinstance(value, dict) and all(
        isinstance(k, str) and _number(v) for k, v in value.items()
    )
    return None if good else "expected metrics: a mapping of names to finite numbers"


def _check_files(value: Any) -> str | None:
    good = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if good else "expected files: a list of artifact keys"


def _check_object(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"expected a mapping, got {type(value).__name__}"


def _check_list(value: Any) -> str | None:
    return None if isinstance(value, list) else f"expected a list, got {type(value).__name__}"


_CHECKS: dict[ValueType, Callable[[Any], str | None]] = {
    ValueType.ANY: lambda _value: None,
    ValueType.INTEGER: _check_integer,
    ValueType.NUMBER: _check_number,
    ValueType.BOOLEAN: _check_boolean,
    ValueType.METRICS: _check_metrics,
    ValueType.FILES: _check_files,
    ValueType.OBJECT: _check_object,
    ValueType.LIST: _check_list,
}
"""The check of each type that is not text; text types are ``_text_problem``'s."""


def check_value(kind: ValueType, value: Any) -> str | None:
    """Why ``value`` is not a ``kind``, or ``None`` when it is one."""
    check = _CHECKS.get(kind)
    if check is not None:
        return check(value)
    if kind in SCALAR_TYPES:
        if not isinstance(value, str):
            return f"expected {kind} (text), got {type(value).__name__}"
        return _text_problem(value, kind)
    raise AssertionError(f"unhandled value type {kind}")


def parse_text_input(kind: ValueType, text: str) -> Any:
    """A value of ``kind`` from command-line text (``--input budget_s=30``).

    Numbers and booleans are parsed; structured types are read as JSON; the rest stay text.
    """
    import json

    if kind == ValueType.INTEGER and re.fullmatch(r"-?[0-9]{1,18}", text):
        return int(text)
    if kind == ValueType.NUMBER:
        try:
            return float(text) if not re.fullmatch(r"-?[0-9]{1,18}", text) else int(text)
        except ValueError:
            return text
    if kind == ValueType.BOOLEAN and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind in (ValueType.OBJECT, ValueType.LIST, ValueType.METRICS, ValueType.FILES):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text
