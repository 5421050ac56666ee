"""The Host rule every process that owns a listening socket applies (RELIABILITY 31): the
platform's guard and the gateway processes in front of it ask this one function, so a
request is refused the same way (same status, same body) whichever port it reached.

- no ``Host`` header, or more than one: 400 (RFC 9112 section 3.2);
- a ``Host`` naming a host outside the allowed list (DNS rebinding): 400.

It reads header lines as the servers parsed them (lowercase names, raw values), so that the
gateway's per-request cost is a scan of a few bytes comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from loopml.core.errors import BadRequestError

_HOST = b"host"
_NAMES: dict[bytes, str] = {}
"""Host header values already read, to their host names: a client names the same few, and
the gateway's per-request cost is then one dictionary lookup (bounded: cleared when full)."""
_MAX_NAMES = 1024


def host_name(value: str) -> str:
    """The host name in a ``Host`` header value, lowercased, without the port (an IPv6
    literal without its brackets)."""
    host = value.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else host.lower()
    return host.split(":", 1)[0].lower()


def host_refusal(
    headers: Iterable[tuple[bytes, bytes]], allowed: Set[str]
) -> BadRequestError | None:
    """Why a request with these header lines is refused for its ``Host``, or ``None``.

    Args:
        headers: the request's header lines, names lowercased (as uvicorn's scope and the
            gateway's parser hold them).
        allowed: the host names served (``server.allowed_hosts`` and the bind host); ``*``
            allows any; empty: the list is not known here (only the count is checked).
    """
    found: bytes | None = None
    for name, value in headers:
        if name == _HOST:
            if found is not None:
                return BadRequestError(
                    "the request has more than one Host header; send exactly one",
                    details={"reason": "host_repeated"},
                )
            found = value
    if found is None:
        return BadRequestError(
            "the request has no Host header; send one naming this server",
            details={"reason": "host_missing"},
        )
    if not allowed or "*" in allowed:
        return None
    host = _NAMES.get(found)
    if host is None:
        if len(_NAMES) >= _MAX_NAMES:
            _NAMES.clear()
        host = _NAMES[found] = host_name(found.decode("latin-1"))
    if host in allowed:
        return None
    return BadRequestError(
        f"Host {host[:100]!r} is not served here; allowed hosts: {sorted(allowed)}. "
        "Set server.allowed_hosts to add one.",
        details={"reason": "host_not_allowed"},
    )
