"""The monitor's window sizes: ``"1h"`` -> 3,600 s, the sizes it keeps (``monitor.windows``,
each a multiple of the smallest) and the usage-only size beside them
(``monitor.usage_window``). Pure, so the settings check them when they load."""

from __future__ import annotations

import re

from loopml.core.errors import ValidationError

_SIZE = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86_400}


def parse_size(size: str, field: str = "windows") -> int:
    """``"1h"`` -> 3600: a window size in seconds (``field`` names the setting in errors)."""
    found = _SIZE.fullmatch(size) if isinstance(size, str) else None
    if found is None:
        raise ValidationError(
            f"invalid window size {str(size)[:20]!r}: expected a number and m, h or d ('1h')",
            details={"field": field},
        )
    return int(found.group(1)) * _UNIT_S[found.group(2)]


def parse_sizes(sizes: list[str]) -> dict[str, int]:
    """The sizes in seconds, smallest first; each a multiple of the smallest."""
    parsed = sorted(((parse_size(s), s) for s in dict.fromkeys(sizes)), key=lambda p: p[0])
    smallest = parsed[0][0]
    for seconds, size in parsed:
        if seconds % smallest:
            raise ValidationError(
                f"window size {size!r} is not a multiple of the smallest ({parsed[0][1]!r})",
                details={"field": "windows"},
            )
    return {size: seconds for seconds, size in parsed}


def usage_seconds(usage: str, sizes: list[str]) -> int:
    """The usage-only size ``usage`` in seconds, checked against the kept ``sizes``: smaller
    than the smallest of them (what drift, quality, canaries and alerts read, so they can
    never read a usage-only window) and a divisor of it (its windows add up to the smallest).

    Raises:
        ValidationError: ``usage`` or ``sizes`` is not a valid size, or ``usage`` is not
            smaller than the smallest of ``sizes`` or does not divide it.
    """
    seconds = parse_size(usage, "usage_window")
    name, smallest = next(iter(parse_sizes(sizes).items()))
    if seconds >= smallest or smallest % seconds:
        raise ValidationError(
            f"usage_window {usage!r} must be smaller than the smallest of windows ({name!r}) "
            f"and divide it (for example '1m'), or '' for no usage-only windows",
            details={"field": "usage_window"},
        )
    return seconds
