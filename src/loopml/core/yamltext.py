"""YAML (and so JSON) documents written by people, always read with the safe loader.

The safe loader builds plain data only: a tag such as ``!!python/object/apply`` is an
error, never a call (RELIABILITY 9).
"""

from __future__ import annotations

from typing import Any

from loopml.core.errors import ValidationError


def load_yaml(text: str, what: str) -> Any:
    """The data in ``text``, a YAML or JSON document describing ``what`` (for messages).

    Raises:
        ValidationError: text that is not YAML or JSON.
    """
    # Imported here: only the client, the CLI and the few routes that take YAML need it.
    import yaml  # type: ignore[import-untyped]

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(
            f"the {what} is not valid YAML or JSON: {str(exc)[:300]}",
            details={"reason": str(exc)[:500]},
        ) from None
