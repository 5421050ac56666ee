"""Identifiers."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """A new random identifier: 32 lowercase hex characters."""
    return uuid.uuid4().hex
