"""``loopml monitor``'s words for a window's failed requests."""

from __future__ import annotations

from loopml.cli.monitor import _failed


def test_failed_requests_read_as_counts_per_http_status_not_a_dict() -> None:
    # The line read "1 failed {'405': 1}".
    assert _failed({"errors": 1, "errors_by_status": {"405": 1}}) == "1 failed (HTTP 405: 1)"
    assert _failed({"errors": 3, "errors_by_status": {"503": 2, "405": 1}}) == (
        "3 failed (HTTP 405: 1, HTTP 503: 2)"
    )
    assert _failed({"errors": 0, "errors_by_status": {}}) == "0 failed"
