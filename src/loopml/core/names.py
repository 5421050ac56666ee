"""Validated names: one pattern per kind of name, checked at every edge."""

from __future__ import annotations

import re

from loopml.core.errors import ValidationError

PROJECT_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
DEFAULT_PROJECT = "default"

EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def validate_project_name(name: str) -> str:
    """Return ``name`` if it is a valid project name, else raise ``ValidationError``.

    A project name starts with a lowercase letter, then up to 62 lowercase letters, digits,
    ``_`` or ``-``. It is used in storage paths and URLs, so nothing else is allowed.
    """
    if not isinstance(name, str) or not PROJECT_NAME_PATTERN.fullmatch(name):
        shown = repr(name)[:80]
        raise ValidationError(
            f"invalid project name {shown}: expected a lowercase letter followed by up to 62 "
            "lowercase letters, digits, '_' or '-' (for example 'churn-model')",
            details={"field": "name", "pattern": PROJECT_NAME_PATTERN.pattern},
        )
    return name


def validate_event_type(event_type: str) -> str:
    """Return ``event_type`` if it is dotted lowercase words (``table.appended``)."""
    if len(event_type) > 100 or not EVENT_TYPE_PATTERN.fullmatch(event_type):
        raise ValidationError(
            f"invalid event type {event_type[:80]!r}: expected dotted lowercase words "
            "such as 'project.created'",
            details={"field": "type"},
        )
    return event_type
