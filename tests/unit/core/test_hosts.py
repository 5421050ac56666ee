"""The one Host rule (RELIABILITY 31): what the platform's guard and the gateway processes
both ask, on header lines as their servers parsed them."""

from __future__ import annotations

import pytest

from loopml.core.hosts import host_name, host_refusal

ALLOWED = frozenset({"127.0.0.1", "localhost", "::1"})


def _reason(headers: list[tuple[bytes, bytes]], allowed: frozenset[str] = ALLOWED) -> str | None:
    refusal = host_refusal(headers, allowed)
    if refusal is None:
        return None
    assert refusal.status == 400
    reason = refusal.details["reason"]
    assert isinstance(reason, str)
    return reason


@pytest.mark.parametrize(
    "value", [b"localhost", b"LOCALHOST:8765", b"127.0.0.1:1", b"[::1]:8765", b"[::1]"]
)
def test_one_allowed_host_passes(value: bytes) -> None:
    assert _reason([(b"accept", b"*/*"), (b"host", value)]) is None


def test_a_missing_host_is_refused_whatever_the_list() -> None:
    for allowed in (ALLOWED, frozenset({"*"}), frozenset[str]()):
        assert _reason([(b"accept", b"*/*")], allowed) == "host_missing"


def test_a_repeated_host_is_refused_whatever_the_order_and_the_list() -> None:
    for allowed in (ALLOWED, frozenset({"*"}), frozenset[str]()):
        for pair in ([b"localhost", b"evil.example"], [b"evil.example", b"localhost"]):
            headers = [(b"host", pair[0]), (b"content-type", b"x"), (b"host", pair[1])]
            assert _reason(headers, allowed) == "host_repeated"
    assert _reason([(b"host", b"localhost"), (b"host", b"localhost")]) == "host_repeated"


@pytest.mark.parametrize(
    "value", [b"evil.example", b"localhost.evil.example", b"", b"localhost, evil", b"\x00"]
)
def test_a_host_outside_the_list_is_refused(value: bytes) -> None:
    assert _reason([(b"host", value)]) == "host_not_allowed"
    refusal = host_refusal([(b"host", value)], ALLOWED)
    assert refusal is not None
    assert "server.allowed_hosts" in refusal.message


def test_any_host_with_a_star_or_an_unknown_list() -> None:
    assert _reason([(b"host", b"evil.example")], frozenset({"*"})) is None
    assert _reason([(b"host", b"evil.example")], frozenset()) is None


def test_host_name_drops_the_port_and_userinfo_and_lowercases() -> None:
    assert host_name("Example.COM:80") == "example.com"
    assert host_name("user@example.com:80") == "example.com"
    assert host_name("[::1]:8080") == "::1"
    assert host_name("[::1") == "[::1"


def test_the_names_read_stay_bounded_whatever_hosts_come() -> None:
    from loopml.core import hosts

    for n in range(3 * hosts._MAX_NAMES):
        assert _reason([(b"host", b"h%d.example" % n)]) == "host_not_allowed"
    assert len(hosts._NAMES) <= hosts._MAX_NAMES
    assert _reason([(b"host", b"localhost:1")]) is None
