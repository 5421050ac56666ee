"""Kubernetes object names and label values that are always valid, and stay stable.

A name that already fits is used as it is; one that does not (too long, or holding a
character Kubernetes refuses) is cut and given a hash of the whole, so two different inputs
never share a name and the same input always gets the same one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from loopml.core.errors import ValidationError

LABEL_LIMIT = 63
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_HASH_CHARS = 8


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def dns_label(text: str, limit: int = LABEL_LIMIT) -> str:
    """``text`` as an RFC 1035 label (a valid Service, Deployment or InferenceService name)
    of at most ``limit`` characters: as it is when it fits, else cut and suffixed with
    ``-`` and 8 hex characters of its SHA-256."""
    if len(text) <= limit and _DNS1035.fullmatch(text):
        return text
    head = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    head = head[: limit - _HASH_CHARS - 1].strip("-")
    if not head[:1].isalpha():
        head = f"x{head}"[: limit - _HASH_CHARS - 1].rstrip("-")
    return f"{head}-{_digest(text)}"


def label_value(text: str) -> str:
    """``text`` as a label value: as it is when valid, else cleaned, cut and hashed."""
    if len(text) <= LABEL_LIMIT and _LABEL_VALUE.fullmatch(text):
        return text
    head = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[: LABEL_LIMIT - _HASH_CHARS - 1]
    head = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", head)
    return f"{head}-{_digest(text)}" if head else _digest(text)


def validate_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is a valid Kubernetes namespace name, else raise."""
    valid = isinstance(namespace, str) and len(namespace) <= LABEL_LIMIT
    if not (valid and _DNS1123.fullmatch(namespace)):
        raise ValidationError(
            f"invalid Kubernetes namespace {repr(namespace)[:80]}: expected 1 to 63 lowercase "
            "letters, digits or '-', starting and ending with a letter or digit",
            details={"field": "namespace"},
        )
    return namespace


@dataclass(frozen=True)
class GatewayParent:
    """The Gateway API ``Gateway`` a deployment's HTTPRoute attaches to: its name, and its
    namespace when it is not the route's own."""

    name: str
    namespace: str | None = None

    @classmethod
    def parse(cls, text: str) -> GatewayParent:
        """``name`` or ``namespace/name``, each a valid Kubernetes name, else raise."""
        parts = text.split("/") if isinstance(text, str) else []
        name = parts[-1] if parts else ""
        namespace = parts[0] if len(parts) == 2 else None
        valid = len(parts) in (1, 2) and len(name) <= 253
        valid = valid and _DNS1123_SUBDOMAIN.fullmatch(name) is not None
        if namespace is not None:
            valid = valid and len(namespace) <= LABEL_LIMIT
            valid = valid and _DNS1123.fullmatch(namespace) is not None
        if not valid:
            raise ValidationError(
                f"invalid gateway_parent {repr(text)[:80]}: expected the Gateway's name, or "
                "namespace/name (lowercase letters, digits and '-'; '.' also in the name), "
                "such as 'gateway-system/public'",
                details={"field": "gateway_parent"},
            )
        return cls(name, namespace)
