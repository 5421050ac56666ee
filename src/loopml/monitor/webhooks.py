"""Alert notifications to webhooks, as Slack-compatible JSON (``{"text": ...}`` plus the
alert's fields under ``loopml``).

A target is refused (``WebhookRefused``) unless it is ``http``/``https`` and every address
its host resolves to is public: loopback, link-local (169.254.0.0/16, the cloud metadata
address among them), private, shared, reserved, multicast and unspecified addresses are
refused unless ``allow`` names the host or a network holding the address. Each notification
is tried up to ``attempts`` times (0.5 s, then 1 s, 2 s ... between them) and its outcome is
returned for the delivery log.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from loopml.core.errors import ValidationError

Resolver = Callable[[str], list[str]]


class WebhookRefused(ValidationError):
    """A webhook target loopml will not call."""


@dataclass(frozen=True)
class Delivery:
    """How one notification ended."""

    outcome: str
    attempts: int
    status: int | None
    error: str


def _resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise WebhookRefused(f"webhook host {host!r} does not resolve ({exc})") from exc
    return sorted({str(info[4][0]) for info in infos})


def _allowed(
    host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow: Sequence[str]
) -> bool:
    for entry in allow:
        if entry.lower() == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def check_target(url: str, allow: Sequence[str] = (), resolve: Resolver = _resolve) -> str:
    """``url`` if loopml may call it, else ``WebhookRefused`` saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(
            f"invalid webhook {url[:100]!r}: expected an http:// or https:// URL with a host",
            details={"field": "webhook"},
        )
    host = parts.hostname
    try:
        addresses = [host] if ipaddress.ip_address(host) else []
    except ValueError:
        addresses = resolve(host)
    for text in addresses:
        address = ipaddress.ip_address(text)
        if address.is_global or _allowed(host, address, allow):
            continue
        raise WebhookRefused(
            f"webhook {host!r} resolves to {address}, a loopback, link-local, private or "
            "reserved address: refused (name it in monitor.webhook_allow to permit it)",
            details={"field": "webhook", "address": str(address)},
        )
    return url


def slack_body(event: str, rule: dict[str, Any], value: float | None) -> dict[str, Any]:
    """The JSON posted for ``event`` of ``rule``."""
    verb = "FIRING" if event == "alert.firing" else "resolved"
    text = (
        f"[{rule['severity']}] {rule['project']}/{rule['deployment']}: alert {rule['name']} "
        f"{verb} ({rule['metric']} {rule['comparator']} {rule['threshold']:g}, now {value})"
    )
    fields = ("project", "name", "deployment", "metric", "comparator", "threshold", "severity")
    return {
        "text": text,
        "loopml": {"event": event, "value": value, **{f: rule[f] for f in fields}},
    }


def deliver(
    url: str,
    body: dict[str, Any],
    *,
    allow: Sequence[str] = (),
    attempts: int = 3,
    timeout_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Post ``body`` to ``url``, retrying on errors and 5xx / 429 answers."""
    try:
        check_target(url, allow)
    except WebhookRefused as exc:
        return Delivery("refused", 0, None, exc.message)
    status: int | None = None
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            answer = httpx.post(url, json=body, timeout=timeout_s, follow_redirects=False)
            status = answer.status_code
            if status < 300:
                return Delivery("delivered", attempt, status, "")
            error = f"HTTP {status}"
            if status < 500 and status != 429:
                return Delivery("failed", attempt, status, error)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if attempt < attempts:
            sleep(0.5 * 2 ** (attempt - 1))
    return Delivery("failed", attempts, status, error)
