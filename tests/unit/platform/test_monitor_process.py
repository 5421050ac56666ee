"""The monitor's rounds in a process of their own (``monitor.process``, issue 53 item 3): a
real platform with a real replica, the process as ``loopml up`` starts it. Its rounds see
the server's own counts (a refused request never reaches the prediction log, so only the
server's gateway knows it), its figures reach the server's ``/metrics`` and its log records
the server's log, it runs at the lower priority, comes back when killed, and is gone with
its lease when the server stops."""

from __future__ import annotations

import logging
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.faces.context import AppContext
from loopml.platform import create_api_app
from loopml.platform.monitoring import MODULE
from loopml.settings import Settings
from loopml.store import monitor as rows
from tests.conftest import free_port
from tests.unit.deploy.deploy_support import instances, package_files, register_files
from tests.waiting import eventually

BODY = {"instances": instances(1)}
INVALID = {"instances": [{"no such column": "x"}]}
NICE = 7


@contextmanager
def platform(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path / "home",
        database={"url": database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={"port": free_port(), "streams": False, "automation_interval_s": 3600},
        auth={"enabled": False},
        monitor={"interval_s": 0.5, "lag_s": 2, "windows": ["1h"], "nice": NICE},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as client:
        ctx: AppContext = client.app.state.running.context  # type: ignore[attr-defined]
        register_files(ctx.store, ctx.artifacts, package_files(tmp_path / "pkg"))
        yield client


def _usage(http: TestClient) -> dict[str, Any]:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    with ctx.store.session() as session:
        found = rows.list_windows(session, "default", "churn", size="1h")
    usage: dict[str, Any] = found[0]["summary"]["usage"] if found else {}
    return usage


def _monitor_process() -> psutil.Process | None:
    """This test's monitor process: a live child of this process running the module."""
    for child in psutil.Process().children():
        try:
            if MODULE in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(r.name == "loopml.monitor" and text in r.getMessage() for r in list(caplog.records))


def _new_process(old: int) -> psutil.Process | None:
    found = _monitor_process()
    return found if found is not None and found.pid != old else None


def test_rounds_run_in_their_own_process_with_the_servers_counts(
    tmp_path: Path, migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="loopml.monitor")
    with platform(tmp_path, migrated_database_url) as http:
        first = eventually(_monitor_process, 30, "the monitor process to start")
        lower = psutil.Process().nice() + NICE  # it lowers its own once started
        eventually(lambda: first.nice() == lower, 30, f"the monitor process at nice {lower}")
        folder = Path(first.cmdline()[-3]).parent  # its settings file's
        assert folder.is_dir()
        # Its log records are the server's: logged here, as a thread's were.
        eventually(
            lambda: _logged(caplog, f"pid {first.pid}) now runs the monitor"),
            30,
            "the monitor process's lease record in the server's log",
            describe=lambda: [r.getMessage() for r in caplog.records][-10:],
        )

        sdk = Client(http=TestClient(http.app, base_url="http://127.0.0.1"))
        sdk.deployments.create("churn", "cancer/1")
        sdk.deployments.wait("churn", timeout_s=60)
        for _ in range(3):
            assert http.post("/deployments/churn/predict", json=INVALID).status_code == 422
        for _ in range(10):
            answer = http.post("/deployments/churn/predict", json=BODY)
            assert answer.status_code == 200, answer.text

        # The 3 refused requests are only in this server's gateway counts: the process's
        # rounds get them through the share the server leaves each round.
        seen: list[dict[str, Any]] = [{}]

        def counted() -> bool:
            seen[0] = _usage(http)
            return seen[0].get("requests") == 13 and seen[0]["errors"] == 3

        eventually(
            counted,
            60,
            "the monitor process's windows to count 13 requests, 3 of them failed",
            describe=lambda: f"usage now: {seen[0]}",
        )

        # Its figures reach the server's /metrics: the default rules' states, 0 for ok.
        def alert_states() -> list[str]:
            text = http.get("/metrics").text
            return re.findall(r'loopml_monitor_alert_state\{[^}]*deployment="churn"', text)

        eventually(alert_states, 30, "the default rules' states on the server's /metrics")

        # Killed, it comes back and its rounds go on (the lease is taken again once the
        # dead process's has expired).
        os.kill(first.pid, signal.SIGKILL)
        again = eventually(
            lambda: _new_process(first.pid), 60, "the monitor process to be started again"
        )
        for _ in range(2):
            assert http.post("/deployments/churn/predict", json=INVALID).status_code == 422
        eventually(
            lambda: _usage(http)["errors"] == 5,
            120,
            "the restarted monitor process to count the 2 requests refused since",
            describe=lambda: f"usage now: {_usage(http)}",
        )
        sdk.deployments.delete("churn")
    # Stopped with the server, its folder (its settings, secrets in clear) gone.
    assert _monitor_process() is None
    assert not again.is_running() or again.status() == psutil.STATUS_ZOMBIE
    assert not folder.exists()
