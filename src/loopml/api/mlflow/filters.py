"""MLflow's search syntax read into loopml's run search spec (``core.run_search``).

``metrics.acc > 0.9 and params.model = 'lgbm' and attributes.status IN ('FINISHED')`` and
``metrics.`val loss` DESC`` are parsed here by a small scanner of our own; nothing of the
text reaches the database but the typed values of ``MetricFilter`` and ``TextFilter``.

What loopml's search can answer is translated; anything else (``LIKE`` on metrics, filters
on datasets, ``OR``) is refused with ``INVALID_PARAMETER_VALUE`` naming what works,
never silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from loopml.api.mlflow.convert import RUN_NAME_TAG
from loopml.core.errors import ValidationError
from loopml.core.mlflow_filter import Token, read_list, tokenize
from loopml.core.run_search import (
    MAX_TIME_MS,
    AnyFilter,
    AnyOrder,
    AttributeOrder,
    KeyOrder,
    MetricFilter,
    NameFilter,
    TextFilter,
    TimeFilter,
)
from loopml.core.runs import RUN_STATUSES

MAX_FILTER_LENGTH = 10_000
_KINDS = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_ORDER_ATTRIBUTES = {
    "start_time": "start_time",
    "end_time": "end_time",
    "run_name": "name",
    "status": "status",
}
# The runs grammar's own token set for the shared ``tokenize``: numbers with exponents
# (``1e-3``), no ``<>``, non-empty quoted keys, entity prefixes of letters only, and OR or NOT
# read as names (then refused as such): what either grammar accepts or refuses stays its own.
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<and>(?i:and)\b)
    | (?P<op>!=|<=|>=|=|<|>|(?i:not\s+in\b)|(?i:in\b)|(?i:ilike\b)|(?i:like\b))
    | (?P<ident>[A-Za-z_]+\.(?:`[^`]+`|"[^"]+"|[A-Za-z0-9_.\-/:]+)|[A-Za-z_][A-Za-z0-9_]*)
    | '(?P<sq>[^']*)'
    | "(?P<dq>[^"]*)"
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    | (?P<open>\()
    | (?P<close>\))
    | (?P<comma>,)
    )""",
    re.VERBOSE,
)
SUPPORTED = (
    "metrics.<key> with = != < <= > >= and a number; params.<key> and tags.<key> with "
    "= != < <= > >= LIKE ILIKE and a quoted string; attributes.run_name (tags.mlflow.runName) with "
    "= != LIKE ILIKE; attributes.status and attributes.run_id with = or IN (...); "
    "attributes.start_time and attributes.end_time (milliseconds since the epoch) with "
    "= != < <= > >= and a number; clauses joined by AND"
)


@dataclass
class Translated:
    """A filter string as loopml search terms."""

    filters: list[AnyFilter] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    matches_nothing: bool = False
    """The clauses contradict each other (``status = 'A' and status = 'B'``)."""


def _refuse(text: str, why: str) -> ValidationError:
    return ValidationError(
        f"unsupported search filter {text[:120]!r}: {why}. Supported: {SUPPORTED}",
        details={"field": "filter"},
    )


def _split_ident(text: str, ident: str) -> tuple[str, str]:
    if "." not in ident:
        return "attribute", ident
    prefix, key = ident.split(".", 1)
    kind = _KINDS.get(prefix.lower())
    if kind is None:
        raise _refuse(text, f"unknown entity {prefix!r} (metrics, params, tags, attributes)")
    if key[:1] in '`"':
        key = key[1:-1]
    return kind, key


def _value(text: str, tokens: list[Token], i: int) -> tuple[Any, int]:
    kind, raw = tokens[i] if i < len(tokens) else ("end", "")
    if kind in ("sq", "dq"):
        return raw, i + 1
    if kind == "num":
        return float(raw), i + 1
    if kind == "open":
        found = read_list(tokens, i)
        if found is None:
            raise _refuse(text, "a list must be ('a', 'b', ...) of quoted strings")
        return found
    raise _refuse(text, "expected a number, a quoted string or a (list)")


def parse_filter(text: str | None) -> Translated:
    """Translate an MLflow run filter; ``ValidationError`` for what loopml cannot answer."""
    out = Translated()
    if not text or not text.strip():
        return out
    if len(text) > MAX_FILTER_LENGTH:
        raise _refuse(text, f"longer than {MAX_FILTER_LENGTH} characters")
    tokens = tokenize(text, _TOKEN, _refuse)
    i = 0
    while i < len(tokens):
        if i + 1 >= len(tokens) or tokens[i][0] != "ident" or tokens[i + 1][0] != "op":
            raise _refuse(text, "expected '<entity>.<key> <comparator> <value>'")
        kind, key = _split_ident(text, tokens[i][1])
        op = " ".join(tokens[i + 1][1].upper().split())
        value, i = _value(text, tokens, i + 2)
        try:
            _clause(text, out, kind, key, op, value)
        except ValueError as exc:  # pydantic's, for a key or value out of loopml's rules
            raise _refuse(text, _first_error(exc)) from exc
        if i < len(tokens):
            if tokens[i][0] != "and":
                raise _refuse(text, "clauses are joined by AND (OR is not supported)")
            i += 1
    return out


def _clause(text: str, out: Translated, kind: str, key: str, op: str, value: Any) -> None:
    if (kind, key) == ("tag", RUN_NAME_TAG) or (kind == "attribute" and key.lower() == "run_name"):
        _run_name(text, out, op, value)
        return
    if kind == "attribute":
        _attribute(text, out, key.lower(), op, value)
        return
    text_ops = ("LIKE", "ILIKE") if kind in ("param", "tag") else ()
    if op not in ("=", "!=", "<", "<=", ">", ">=", *text_ops):
        raise _refuse(text, f"{op} is not supported on {kind}s")
    if kind == "metric":
        if not isinstance(value, float):
            raise _refuse(text, f"metrics.{key} is compared with a number")
        out.filters.append(
            MetricFilter.model_validate({"kind": "metric", "key": key, "op": op, "value": value})
        )
        return
    if not isinstance(value, str):
        raise _refuse(text, f"{kind}s.{key} is compared with a quoted string")
    out.filters.append(
        TextFilter.model_validate({"kind": kind, "key": key, "op": op, "value": value})
    )


def _run_name(text: str, out: Translated, op: str, value: Any) -> None:
    """The run's name is MLflow's ``mlflow.runName`` tag and ``run_name`` attribute."""
    if op not in ("=", "!=", "LIKE", "ILIKE") or not isinstance(value, str):
        raise _refuse(text, "the run's name takes = != LIKE ILIKE and a quoted string")
    out.filters.append(NameFilter(kind="name", op=op, value=value))  # type: ignore[arg-type]


def _time(text: str, out: Translated, key: str, op: str, value: Any) -> None:
    """``attributes.start_time > 1700000000000``: milliseconds since the epoch."""
    if op not in ("=", "!=", "<", "<=", ">", ">=") or not isinstance(value, float):
        raise _refuse(text, f"attributes.{key} is compared (= != < <= > >=) with a number")
    if not value.is_integer() or not 0 <= value <= MAX_TIME_MS:
        raise _refuse(text, f"attributes.{key} takes whole milliseconds since the epoch")
    out.filters.append(
        TimeFilter.model_validate({"kind": "time", "key": key, "op": op, "value": int(value)})
    )


def _attribute(text: str, out: Translated, key: str, op: str, value: Any) -> None:
    if key in ("start_time", "end_time"):
        _time(text, out, key, op, value)
        return
    values = value if isinstance(value, list) else [value]
    if op not in ("=", "IN", "!=", "NOT IN") or not all(isinstance(v, str) for v in values):
        raise _refuse(text, f"attributes.{key} takes = 'x', != 'x', IN ('x', ...) or NOT IN")
    negate = op in ("!=", "NOT IN")
    if key == "status":
        _status(text, out, values, negate)
    elif key in ("run_id", "run_uuid") and not negate:
        ids = [v.lower() for v in values]
        out.run_ids = [r for r in out.run_ids if r in ids] if out.run_ids else ids
        out.matches_nothing |= not out.run_ids
    else:
        raise _refuse(text, f"attributes.{key} {op} cannot be searched")


def _status(text: str, out: Translated, values: list[str], negate: bool) -> None:
    unknown = [v for v in values if v not in RUN_STATUSES]
    if unknown:
        raise _refuse(text, f"unknown status {unknown[0]!r}: one of {', '.join(RUN_STATUSES)}")
    chosen: list[str] = [s for s in RUN_STATUSES if (s in values) != negate]
    out.status = [s for s in out.status if s in chosen] if out.status else chosen
    out.matches_nothing |= not out.status


def parse_order(items: list[str]) -> list[AnyOrder]:
    """Translate MLflow ``order_by`` items such as ``metrics.acc DESC``."""
    orders: list[AnyOrder] = []
    for item in items:
        match = re.fullmatch(r"\s*(.+?)(?:\s+(?i:(asc|desc)))?\s*", item or "")
        if match is None or len(item) > 500:
            raise _refuse_order(item, "expected '<entity>.<key> [ASC|DESC]'")
        try:
            kind, key = _split_ident(item, match.group(1).strip())
        except ValidationError as exc:
            raise _refuse_order(item, "entities are metrics, params, tags, attributes") from exc
        descending = (match.group(2) or "").lower() == "desc"
        try:
            orders.append(_order(item, kind, key, descending))
        except ValueError as exc:
            raise _refuse_order(item, _first_error(exc)) from exc
    return orders


def _order(item: str, kind: str, key: str, descending: bool) -> AnyOrder:
    if kind == "attribute":
        attribute = _ORDER_ATTRIBUTES.get(key.lower())
        if attribute is None:
            raise _refuse_order(item, f"attributes: {', '.join(_ORDER_ATTRIBUTES)}")
        fields: dict[str, Any] = {"kind": "attribute", "key": attribute}
        return AttributeOrder.model_validate({**fields, "descending": descending})
    return KeyOrder.model_validate({"kind": kind, "key": key, "descending": descending})


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        found = errors(include_url=False, include_input=False)
        if found:
            return f"{'.'.join(str(p) for p in found[0]['loc'])}: {found[0]['msg']}"
    return str(exc)


def _refuse_order(item: str, why: str) -> ValidationError:
    return ValidationError(
        f"unsupported order_by {item[:120]!r}: {why}", details={"field": "order_by"}
    )
