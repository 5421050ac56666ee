"""Replica resources: psutil readings of real processes, their reduction in a window, and a
real local replica whose CPU, memory and restart appear in the monitor's window, the
replicas route, ``/metrics`` and an alert rule."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from loopml.cli.monitor import render
from loopml.core.alerts import metric_value
from loopml.core.resources import ReplicaSample
from loopml.deploy.targets._meter import ProcessMeter
from loopml.monitor.resources import merge_resources, resources_summary, sample_state
from loopml.monitor.windows import empty_state, merge_state, summarize
from tests.unit.deploy.deploy_support import (
    Platform,
    fit,
    home_settings,
    register_model,
    replica_processes,
    wait_until,
)

MB = 1024 * 1024


def _spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.fixture
def busy() -> Iterator[subprocess.Popen[bytes]]:
    process = _spawn("while True: pass")
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def idle() -> Iterator[subprocess.Popen[bytes]]:
    process = _spawn("import time; time.sleep(60)")
    yield process
    process.kill()
    process.wait()


def _cpu_seconds(pid: int) -> float:
    """utime + stime from /proc, read without psutil (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_meter_tells_a_busy_process_from_an_idle_one(
    busy: subprocess.Popen[bytes], idle: subprocess.Popen[bytes]
) -> None:
    meter = ProcessMeter()
    # The first reading of each is the baseline.
    spent, started = _cpu_seconds(busy.pid), time.monotonic()
    assert meter.read(busy.pid) is not None
    assert meter.read(idle.pid) is not None
    time.sleep(1.5)
    hot, cold = meter.read(busy.pid), meter.read(idle.pid)
    expected = 100 * (_cpu_seconds(busy.pid) - spent) / (time.monotonic() - started)
    assert hot is not None
    assert cold is not None
    # What the busy loop got of a shared machine, as the kernel counts it: the meter agrees.
    assert hot.cpu_percent == pytest.approx(expected, abs=8), (hot, expected)
    assert hot.cpu_percent > 10, hot
    assert hot.cpu_percent <= 110, hot  # one thread: at most one core
    assert cold.cpu_percent < 5, cold
    assert hot.rss_bytes > 1 * MB
    assert cold.rss_bytes > 1 * MB
    assert hot.uptime_s > 1.4


def test_the_meter_counts_established_connections_and_forgets_ended_processes() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = (
            "import socket, time\n"
            f"s = [socket.create_connection(('127.0.0.1', {port})) for _ in range(3)]\n"
            "time.sleep(60)\n"
        )
        process = _spawn(code)
        accepted = [listener.accept()[0] for _ in range(3)]
        try:
            meter = ProcessMeter()
            reading = wait_until(lambda: meter.read(process.pid), 10, "no reading")
            assert reading.connections == 3
        finally:
            process.kill()
            process.wait()
            for conn in accepted:
                conn.close()
    assert meter.read(process.pid) is None


def _sample(cpu: float, rss_mb: float, restarts: int = 0, replica: int = 0) -> ReplicaSample:
    return ReplicaSample(
        project="default",
        deployment="churn-api",
        model="churn",
        version=1,
        revision=1,
        replica=replica,
        pid=100 + replica,
        state="ready",
        cpu_percent=cpu,
        rss_bytes=int(rss_mb * MB),
        connections=2,
        restarts=restarts,
        uptime_s=5.0,
    )


def test_a_window_keeps_mean_and_peak_cpu_peak_and_last_memory_and_sums_restarts() -> None:
    first = {"r1/0": sample_state(_sample(10, 100), 0, at=1.0)}
    second = {"r1/0": sample_state(_sample(50, 300), 1, at=2.0)}
    third = {"r1/0": sample_state(_sample(30, 200), 0, at=3.0)}
    other = {"r1/1": sample_state(_sample(5, 80, replica=1), 0, at=3.0)}
    # Merged out of order (a larger window merges pieces in any order): the last is by time.
    merged = merge_resources(merge_resources(third, first), merge_resources(second, other))
    summary = resources_summary(merged)
    assert summary is not None
    [zero, one] = summary["replicas"]
    assert zero == {
        "replica": "r1/0",
        "pid": 100,
        "samples": 3,
        "cpu_mean": 30.0,
        "cpu_max": 50.0,
        "rss_mb_last": 200.0,
        "rss_mb_max": 300.0,
        "connections_max": 2,
        "restarts": 1,
    }
    assert one["replica"] == "r1/1"
    assert (summary["cpu_percent"], summary["rss_mb"], summary["restarts"]) == (30.0, 300.0, 1)
    assert resources_summary({}) is None


def test_windows_stored_before_resources_existed_still_merge() -> None:
    old = empty_state()
    del old["resources"]
    new = empty_state()
    new["resources"] = {"r1/0": sample_state(_sample(20, 150), 0, at=1.0)}
    merged = merge_state(old, new)
    summary = summarize(merged, None, 60.0, config=None)  # type: ignore[arg-type]
    assert summary["resources"]["rss_mb"] == 150.0
    assert metric_value(summary, "rss_mb") == 150.0
    assert metric_value(summary, "cpu_percent") == 20.0
    assert metric_value(summarize(empty_state(), None, 60.0, None), "rss_mb") is None  # type: ignore[arg-type]


# ------------------------------------------------------------------ a real replica


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = home_settings(tmp_path_factory.mktemp("resources-home"))
    monitor = settings.monitor.model_copy(update={"interval_s": 0.5, "windows": ["1m", "1h"]})
    running = Platform(settings.model_copy(update={"monitor": monitor}))
    running.start()
    try:
        register_model(running.settings, running.store, running.artifacts, fit(1.0), versions=2)
        yield running
    finally:
        running.stop()
    assert replica_processes() == [], "replicas outlived the platform"


def _windows(http: httpx.Client, platform: Platform, name: str) -> list[dict[str, Any]]:
    answer = http.get(
        f"{platform.url}/api/v1/projects/default/deployments/{name}/windows",
        params={"window": "1m"},
    )
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def _measured(
    http: httpx.Client, platform: Platform, name: str, pid: int, *, busy: bool = False
) -> dict[str, Any]:
    """The newest window's figures of the replica running as ``pid``, once the monitor has
    measured it (``busy``: the newest whose samples saw it use CPU)."""

    def found() -> dict[str, Any] | None:
        for window in _windows(http, platform, name):
            for replica in window["summary"].get("resources", {}).get("replicas", []):
                if replica["pid"] == pid and (not busy or replica["cpu_max"] > 0):
                    return {"window": window, **replica}
        return None

    what = f"replica pid {pid} to be measured" + (" using CPU" if busy else "")
    measured: dict[str, Any] = wait_until(found, 30, what)
    return measured


def test_a_replicas_cpu_memory_and_restart_appear_within_one_window(platform: Platform) -> None:
    control = platform.serving.control
    control.create("default", "metered", {"model": "cancer/1"}, actor="t")
    try:
        with httpx.Client(timeout=30, trust_env=False) as http:
            wait_until(
                lambda: platform.predict(http, "metered").status_code == 200, 60, "never ready"
            )
            [process] = replica_processes("metered")
            # A replica's CPU is counted from its first sample on: requests answered before
            # it would leave every sample at 0.
            _measured(http, platform, "metered", process.pid)
            for _ in range(20):
                assert platform.predict(http, "metered").status_code == 200
            seen = _measured(http, platform, "metered", process.pid, busy=True)
            assert seen["replica"] == "r1/0"
            assert seen["window"]["model"] == "cancer"
            # A model server with scikit-learn loaded holds tens of MB.
            assert 20 <= seen["rss_mb_max"] < 2000, seen
            assert seen["restarts"] == 0

            live = http.get(f"{platform.url}/api/v1/projects/default/deployments/metered/replicas")
            assert live.status_code == 200, live.text
            [item] = live.json()["items"]
            assert (item["pid"], item["revision"], item["replica"]) == (process.pid, 1, 0)
            assert item["rss_bytes"] > 20 * MB
            assert live.json()["measured"] is True

            scraped = http.get(f"{platform.url}/metrics").text
            assert 'loopml_replica_rss_bytes{deployment="metered"' in scraped
            assert "loopml_replica_cpu_percent{" in scraped

            # A crash: the supervisor restarts the slot; the window counts one restart.
            os.kill(process.pid, signal.SIGKILL)
            wait_until(
                lambda: [p.pid for p in replica_processes("metered")] not in ([], [process.pid]),
                60,
                "the replica was not restarted",
            )
            [again] = replica_processes("metered")
            restarted = _measured(http, platform, "metered", again.pid)
            assert restarted["replica"] == "r1/0"
            assert restarted["restarts"] == 1, restarted

            rule = http.post(
                f"{platform.url}/api/v1/projects/default/alerts",
                json={
                    "name": "fat",
                    "deployment": "metered",
                    "metric": "rss_mb",
                    "comparator": ">",
                    "threshold": 1,
                    "window": "1m",
                },
            )
            assert rule.status_code == 201, rule.text

            def firing() -> bool:
                shown = http.get(f"{platform.url}/api/v1/projects/default/alerts/fat")
                return bool(shown.json()["state"] == "firing")

            wait_until(firing, 30, "the memory rule never fired")

            # A new model replaces revision 1: its replica, still in this window's figures,
            # is marked retired where the deployment's figures are shown (issue 55, item 7).
            control.update("default", "metered", {"model": "cancer/2"}, actor="t")
            wait_until(
                lambda: any(p.pid != again.pid for p in replica_processes("metered")),
                60,
                "revision 2's replica never started",
            )
            [newer] = [p for p in replica_processes("metered") if p.pid != again.pid]
            assert _measured(http, platform, "metered", newer.pid)["replica"] == "r2/0"
            view = http.get(f"{platform.url}/api/v1/projects/default/deployments/metered/monitor")
            assert view.status_code == 200, view.text
            now = view.json()["now"]
            shown = [
                *now["window"]["summary"]["resources"]["replicas"],
                *(r for other in now["others"] for r in other["replicas"]),
            ]
            retired = {r["replica"]: r["retired"] for r in shown}
            assert now["version"] == 2
            if "r1/0" not in retired:
                # The hour turned between the two replicas' samples: revision 1's is in the
                # window before, and the one shown starts after it was last measured.
                assert now["window"]["start"] > seen["window"]["start"], now
            else:
                assert retired == {"r1/0": True, "r2/0": False}
                # ``loopml monitor``'s resources table says so too.
                console = Console(width=200, record=True)
                console.print(render(view.json()))
                printed = console.export_text()
                assert "r1/0 (retired)" in printed, printed
                assert "r2/0 (retired)" not in printed, printed
            assert retired["r2/0"] is False
    finally:
        control.delete("default", "metered", actor="t")


def test_a_deployment_that_is_not_there_has_no_replicas(platform: Platform) -> None:
    with httpx.Client(timeout=30, trust_env=False) as http:
        answer = http.get(f"{platform.url}/api/v1/projects/default/deployments/nope/replicas")
    assert answer.status_code == 404, answer.text
