"""JSON text as RFC 8259 defines it: the bare words ``NaN`` and ``Infinity`` are not numbers.

Python's ``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity``; a value read that way
later fails in every encoder that follows the standard (``json.dumps(allow_nan=False)``,
orjson, PostgreSQL's ``jsonb``), far from the request that brought it, as a 500.
"""

from __future__ import annotations

import json
from typing import Any


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(
        f"{name} is not a JSON number: send finite numbers only (or null)", name, 0
    )


def loads_strict(data: bytes | str) -> Any:
    """Decode JSON text, refusing the non-standard ``NaN``, ``Infinity`` and ``-Infinity``.

    Raises:
        json.JSONDecodeError: the text is not JSON, or holds a non-finite number.
    """
    return json.loads(data, parse_constant=_refuse_constant)
