"""MLflow's filter grammar for experiments, registered models and model versions, read into
typed clauses.

``name LIKE 'churn%' AND tags.`team` = 'risk'`` (experiments, registered models) and
``name = 'churn' and run_id IN ('...') and version_number > 2`` (versions) are read here by a
small scanner of our own; only the typed values of ``FilterClause`` reach the database. What
MLflow's server refuses is refused here too (``ValidationError``, MLflow's
``INVALID_PARAMETER_VALUE``). Runs have a richer grammar of their own (``api.mlflow.filters``),
read by the same ``tokenize`` with its own token set.

The grammar: clauses joined by ``AND``; a clause is ``<identifier> <comparator> <value>``; an
identifier is an attribute (``name``, ``attribute.name``) or a tag (``tags.<key>``,
``tag.<key>``, the key bare, back-quoted or double-quoted); a value is a quoted string, an
integer (numeric attributes) or a list of quoted strings (``run_id IN (...)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from loopml.core.errors import ValidationError

Entity = Literal["experiments", "models", "versions"]
Comparator = Literal["=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN"]
MAX_LENGTH = 10_000
TEXT_COMPARATORS: tuple[Comparator, ...] = ("=", "!=", "LIKE", "ILIKE")
NUMBER_COMPARATORS: tuple[Comparator, ...] = ("=", "!=", "<", "<=", ">", ">=")
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
"""Models are not prompts: MLflow's clients add ``tags.`mlflow.prompt.is_prompt` != 'true'``
to every model search, and a model without the tag matches it (and ``= 'false'``)."""

_ATTRIBUTES: dict[Entity, dict[str, str]] = {
    "experiments": {"name": "text", "creation_time": "int", "last_update_time": "int"},
    "models": {"name": "text"},
    "versions": {"name": "text", "run_id": "text", "source_path": "text", "version_number": "int"},
}
_ORDER_KEYS: dict[Entity, tuple[str, ...]] = {
    "experiments": ("name", "creation_time", "last_update_time"),
    "models": ("name", "creation_timestamp", "last_updated_timestamp"),
    "versions": ("name", "version_number", "creation_timestamp", "last_updated_timestamp"),
}
Token = tuple[str, str]
"""A filter's token: the name of the pattern group that read it, and its text."""
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<word>(?i:and|or|not\s+in|in|not|ilike|like)\b)
    | (?P<op>!=|<>|<=|>=|=|<|>)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:`[^`]*`|"[^"]*"|[A-Za-z0-9_.\-/:]+))?)
    | '(?P<sq>[^']*)'
    | "(?P<dq>[^"]*)"
    | (?P<num>[-+]?\d+(?:\.\d+)?)
    | (?P<open>\()
    | (?P<close>\))
    | (?P<comma>,)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class FilterClause:
    """One clause: an attribute or a tag, a comparator, and its typed value."""

    kind: Literal["attribute", "tag"]
    key: str
    op: Comparator
    value: str | int | tuple[str, ...]


@dataclass(frozen=True)
class FilterOrder:
    """One ``order_by`` key (MLflow's names: ``creation_timestamp``, ``version_number``...)."""

    key: str
    descending: bool


def _refuse(text: str, why: str) -> ValidationError:
    return ValidationError(
        f"invalid filter {text[:120]!r}: {why}", details={"field": "filter_string"}
    )


def tokenize(
    text: str, pattern: re.Pattern[str], refuse: Callable[[str, str], ValidationError]
) -> list[Token]:
    """``text`` read by ``pattern``'s named groups into tokens, for the registry and
    experiment grammar here and the runs grammar (``api.mlflow.filters``), each with its own
    token set.

    A ``word`` group reads a keyword: upper-cased, its spaces single; ``LIKE``, ``ILIKE``,
    ``IN`` and ``NOT IN`` become comparators (``op``), any other word its own kind (``and``).
    Text no group reads is refused with ``refuse(text, why)``.
    """
    found: list[Token] = []
    position = 0
    while text[position:].strip():
        match = pattern.match(text, position)
        if match is None or match.end() == position:
            raise refuse(text, f"cannot read {text[position : position + 30]!r}")
        kind = match.lastgroup or ""
        raw = match.group(kind)
        if kind == "word":
            raw = " ".join(raw.upper().split())
            kind = "op" if raw in ("LIKE", "ILIKE", "IN", "NOT IN") else raw.lower()
        found.append((kind, raw))
        position = match.end()
    return found


def read_list(tokens: list[Token], i: int) -> tuple[list[str], int] | None:
    """The quoted strings of the ``('a', 'b')`` list opened at ``tokens[i]``, and the index
    after its ``)``; ``None`` when no ``)`` closes it."""
    items: list[str] = []
    i += 1
    while i < len(tokens) and tokens[i][0] in ("sq", "dq", "comma"):
        if tokens[i][0] != "comma":
            items.append(tokens[i][1])
        i += 1
    if i >= len(tokens) or tokens[i][0] != "close":
        return None
    return items, i + 1


def _identifier(text: str, entity: Entity, ident: str) -> tuple[Literal["attribute", "tag"], str]:
    prefix, dot, key = ident.partition(".")
    if not dot:
        prefix, key = "attribute", ident
    if key[:1] in '`"':
        key = key[1:-1]
    if prefix.lower() in ("tag", "tags"):
        if not key:
            raise _refuse(text, "a tag key is empty")
        return "tag", key
    if prefix.lower() not in ("attribute", "attributes"):
        raise _refuse(text, f"invalid entity type {prefix!r}: expected attribute, tag or tags")
    if key not in _ATTRIBUTES[entity]:
        valid = ", ".join(_ATTRIBUTES[entity])
        raise _refuse(text, f"invalid attribute key {key!r}: valid keys are {valid}")
    return "attribute", key


def _value(text: str, tokens: list[Token], i: int) -> tuple[str | int | list[str], int]:
    kind, raw = tokens[i] if i < len(tokens) else ("end", "")
    if kind in ("sq", "dq"):
        return raw, i + 1
    if kind == "num":
        return (int(raw) if raw.lstrip("+-").isdigit() else raw), i + 1
    if kind != "open":
        raise _refuse(text, "expected a quoted string, a number or a list ('a', 'b')")
    found = read_list(tokens, i)
    if found is None or not found[0]:
        raise _refuse(text, "a list is ('a', 'b', ...) of quoted strings")
    return found


def _clause(
    text: str, entity: Entity, ident: str, op: str, value: str | int | list[str]
) -> FilterClause:
    kind, key = _identifier(text, entity, ident)
    op = "!=" if op == "<>" else op
    shape = "text" if kind == "tag" else _ATTRIBUTES[entity][key]
    if isinstance(value, list):
        if (kind, key, op) != ("attribute", "run_id", "IN") or entity != "versions":
            raise _refuse(text, "only run_id IN (...) takes a list of quoted strings")
        return FilterClause(kind, key, "IN", tuple(value))
    if shape == "int":
        if op not in NUMBER_COMPARATORS or not isinstance(value, int):
            raise _refuse(text, f"{key} is compared with = != < <= > >= and an integer")
        return FilterClause(kind, key, op, value)
    if op not in TEXT_COMPARATORS or not isinstance(value, str):
        what = f"tag {key!r}" if kind == "tag" else key
        raise _refuse(text, f"{what} is compared with = != LIKE ILIKE and a quoted string")
    return FilterClause(kind, key, op, value)


def parse_mlflow_filter(text: str | None, entity: Entity) -> list[FilterClause]:
    """The clauses of an MLflow experiment (``entity`` ``experiments``), registered-model
    (``models``) or model-version (``versions``) filter; empty for no filter.

    Raises:
        ValidationError: a filter MLflow's grammar does not allow for ``entity``.
    """
    if not text or not text.strip():
        return []
    if len(text) > MAX_LENGTH:
        raise _refuse(text, f"longer than {MAX_LENGTH} characters")
    tokens = tokenize(text, _TOKEN, _refuse)
    clauses: list[FilterClause] = []
    i = 0
    while i < len(tokens):
        if i + 1 >= len(tokens) or tokens[i][0] != "ident" or tokens[i + 1][0] != "op":
            raise _refuse(text, "expected '<identifier> <comparator> <value>'")
        value, after = _value(text, tokens, i + 2)
        clauses.append(_clause(text, entity, tokens[i][1], tokens[i + 1][1], value))
        i = after
        if i < len(tokens):
            if tokens[i][0] != "and":
                raise _refuse(text, "clauses are joined by AND (OR is not supported)")
            i += 1
            if i == len(tokens):
                raise _refuse(text, "a clause must follow AND")
    return clauses


def parse_mlflow_order(items: list[str], entity: Entity) -> list[FilterOrder]:
    """MLflow ``order_by`` items (``name DESC``, ``version_number``) for ``entity``.

    Raises:
        ValidationError: an unknown key or direction.
    """
    orders: list[FilterOrder] = []
    valid = _ORDER_KEYS[entity]
    for item in items:
        match = re.fullmatch(r"\s*(?:attributes?\.)?(\w+)(?:\s+(\w+))?\s*", item[:200])
        direction = (match.group(2) or "ASC").upper() if match else ""
        if match is None or match.group(1) not in valid or direction not in ("ASC", "DESC"):
            raise ValidationError(
                f"invalid order_by {item[:120]!r}: expected one of {', '.join(valid)}, then "
                "ASC or DESC",
                details={"field": "order_by"},
            )
        orders.append(FilterOrder(match.group(1), direction == "DESC"))
    return orders
