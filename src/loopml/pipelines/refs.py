"""References inside a spec's values: ``${{ inputs.NAME }}`` and
``${{ steps.STEP.outputs.NAME }}``.

A value that is exactly one reference takes the referenced value whole, with its type. A
reference inside longer text (``SELECT * FROM ${{ inputs.table }}``) is replaced by the
value's text, and the result is a string. References may sit anywhere in a step's ``with``
(in nested mappings and lists too) and in the pipeline's ``outputs``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_NAME = r"[a-z][a-z0-9_]{0,62}"
_ANY_REF = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_INPUT = re.compile(rf"^inputs\.({_NAME})$")
_OUTPUT = re.compile(rf"^steps\.({_NAME})\.outputs\.({_NAME})$")
MAX_REFERENCE_CHARS = 300


class BadReference(ValueError):
    """A ``${{ ... }}`` that is not one of the two reference forms."""


@dataclass(frozen=True)
class ValueRef:
    """One reference: to a pipeline input (``step`` is ``None``) or to a step's output."""

    name: str
    step: str | None = None

    def __str__(self) -> str:
        if self.step is None:
            return f"inputs.{self.name}"
        return f"steps.{self.step}.outputs.{self.name}"


def _parse(inner: str) -> ValueRef:
    text = inner.strip()
    if len(text) > MAX_REFERENCE_CHARS:
        raise BadReference("a reference is at most 300 characters")
    if found := _INPUT.fullmatch(text):
        return ValueRef(name=found.group(1))
    if found := _OUTPUT.fullmatch(text):
        return ValueRef(step=found.group(1), name=found.group(2))
    raise BadReference(
        f"unknown reference '${{{{ {text[:80]} }}}}': expected '${{{{ inputs.NAME }}}}' or "
        "'${{ steps.STEP.outputs.NAME }}'"
    )


def find(text: str) -> tuple[list[ValueRef], bool]:
    """The references in ``text``, and whether ``text`` is exactly one reference.

    Raises:
        BadReference: a ``${{ ... }}`` of an unknown form, or an unclosed ``${{``.
    """
    refs = [_parse(m.group(1)) for m in _ANY_REF.finditer(text)]
    rest = _ANY_REF.sub("", text)
    if "${{" in rest:
        raise BadReference("a '${{' is never closed by '}}'")
    whole = len(refs) == 1 and _ANY_REF.fullmatch(text.strip()) is not None
    return refs, whole


def walk(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string inside ``value`` (a JSON-like structure), with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, index))


def substitute(value: Any, lookup: Callable[[ValueRef], Any]) -> Any:
    """``value`` with every reference replaced by ``lookup(reference)``.

    A string that is exactly one reference becomes the looked-up value itself; references
    inside longer text become the value's text (numbers as JSON, booleans as true/false).
    """
    if isinstance(value, dict):
        return {key: substitute(item, lookup) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, lookup) for item in value]
    if not isinstance(value, str) or "${{" not in value:
        return value
    refs, whole = find(value)
    if whole:
        return lookup(refs[0])

    def text(match: re.Match[str]) -> str:
        found = lookup(_parse(match.group(1)))
        if isinstance(found, bool):
            return "true" if found else "false"
        return str(found)

    return _ANY_REF.sub(text, value)
