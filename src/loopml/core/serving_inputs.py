"""Whether a canary or shadow can take every request its deployment's primary takes.

A request is shaped for the primary: its columns by name (``/predict`` records, V2 tensors
named per column) or by position (rows as arrays, one V2 tensor of width N). The model server
refuses a column it does not know, lacks one it needs, or a value it cannot cast (422), so a
second model in the same deployment must take **the same inputs, in the same order**, each
of a type that accepts the primary's: the same type, or ``float`` where the primary takes
``integer`` (every integer is a float). Signatures have no optional inputs, so no extra or
missing input is harmless. A version whose signature is not recorded is not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_WIDER = {("integer", "float")}
"""(primary's type, other's type) pairs where the other takes every value of the primary's."""


def _columns(signature: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    inputs = signature.get("inputs")
    if not isinstance(inputs, Sequence) or not inputs:
        return None
    return [(str(c.get("name")), str(c.get("type"))) for c in inputs if isinstance(c, Mapping)]


def input_mismatch(primary: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """What stops ``other`` (a signature as recorded) from taking the primary's requests;
    empty when it can take them all, or when either signature is unknown."""
    mine, theirs = _columns(primary), _columns(other)
    if mine is None or theirs is None:
        return []
    reasons = _missing(mine, theirs) + _retyped(mine, theirs)
    if not reasons and [n for n, _ in mine] != [n for n, _ in theirs]:
        reasons.append(
            f"the inputs come in another order ({_names([n for n, _ in theirs])} against the "
            f"primary's {_names([n for n, _ in mine])}), so rows sent as arrays would be misread"
        )
    return reasons


def _missing(mine: list[tuple[str, str]], theirs: list[tuple[str, str]]) -> list[str]:
    """The inputs one side has and the other lacks."""
    types, their_types = dict(mine), dict(theirs)
    reasons = []
    lacking = [n for n, _ in theirs if n not in types]
    if lacking:
        reasons.append(f"it needs {_names(lacking)}, which the primary's requests lack")
    unknown = [n for n, _ in mine if n not in their_types]
    if unknown:
        reasons.append(f"it refuses {_names(unknown)}, which the primary's requests carry")
    return reasons


def _retyped(mine: list[tuple[str, str]], theirs: list[tuple[str, str]]) -> list[str]:
    """The shared inputs whose other type does not take every value of the primary's."""
    their_types = dict(theirs)
    changed = [
        f"{n!r} is {their_types[n]} (the primary's is {t})"
        for n, t in mine
        if n in their_types and their_types[n] != t and (t, their_types[n]) not in _WIDER
    ]
    return ["types differ: " + ", ".join(changed[:10])] if changed else []


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")
