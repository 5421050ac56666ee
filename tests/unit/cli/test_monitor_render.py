"""``loopml monitor``'s words for a window's failed requests and a column's drift rule."""

from __future__ import annotations

from loopml.cli.monitor import _failed, _rule


def test_failed_requests_read_as_counts_per_http_status_not_a_dict() -> None:
    # The line read "1 failed {'405': 1}".
    assert _failed({"errors": 1, "errors_by_status": {"405": 1}}) == "1 failed (HTTP 405: 1)"
    assert _failed({"errors": 3, "errors_by_status": {"503": 2, "405": 1}}) == (
        "3 failed (HTTP 405: 1, HTTP 503: 2)"
    )
    assert _failed({"errors": 0, "errors_by_status": {}}) == "0 failed"


def test_the_drift_rule_names_its_test_once() -> None:
    # The cell read "wasserstein wasserstein >= 0.1".
    assert _rule("wasserstein", 0.1) == "wasserstein >= 0.1"
    assert _rule("psi", 0.2) == "psi >= 0.2"
    assert _rule("ks", 0.05) == "ks p < 0.05"
    assert _rule("chi2", 0.01) == "chi2 p < 0.01"
    assert _rule("ks", 0.0) == "ks -"
