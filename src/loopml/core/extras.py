"""Optional dependencies: importing one that an extra provides, with a one-line error that
names the extra when it is missing (rather than a bare ``ModuleNotFoundError``)."""

from __future__ import annotations

import importlib
from types import ModuleType

from loopml.core.errors import ConfigurationError


def require(modules: tuple[str, ...], *, extra: str, purpose: str) -> list[ModuleType]:
    """Import ``modules``; a ``ConfigurationError`` naming ``pip install 'loopml[extra]'``
    when one of them is missing or fails to import.

    Args:
        modules: top-level module names, imported in order.
        extra: the extra that installs them (``text``, ``serve-text``).
        purpose: what needs them, for the message (``training a text model``).
    """
    found = []
    for module in modules:
        try:
            found.append(importlib.import_module(module))
        except ImportError as exc:
            raise ConfigurationError(
                f"{purpose} needs {module}, which is not installed or failed to import "
                f"({exc}): pip install 'loopml[{extra}]'",
                details={"module": module, "extra": extra},
            ) from exc
    return found
