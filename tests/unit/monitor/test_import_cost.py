"""The monitor's statistics need SciPy, whose import costs about a second; ``loopml up``
imports the monitor (its routes and engine) on every start. SciPy is loaded by the first
drift check instead: imported at module level it made ``loopml up`` ready in 5.1 to 6.1 s
against 3.6 to 3.9 s before the monitor landed (bench/startup.py)."""

from __future__ import annotations

import sys

from tests.import_probe import modules_after


def _loaded_after(statement: str) -> list[str]:
    return sorted(m for m in modules_after(statement) if m.split(".")[0] == "scipy")[:5]


def test_the_api_app_starts_without_scipy() -> None:
    assert _loaded_after("import loopml.platform.app") == []


def test_a_drift_check_still_loads_scipy_when_it_needs_it() -> None:
    from loopml.monitor import drift

    assert drift.ks_p_value(0.5, 100, 100) < 0.001
    assert "scipy.stats" in sys.modules
