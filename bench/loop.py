"""Loop benchmark (loopml issue 7): from appending 10,000 new rows to the new champion
answering requests, with a 20 s AutoML budget, and no failed request during the swap.

A real ``loopml up`` (temporary home, free port, embedded worker) gets the breast-cancer rows
(scikit-learn, no download) in a ``bench`` project, the shipped ``retrain`` loop (direct
strategy) and a gate policy without thresholds (so the retrain is promoted: the figure is the
loop's latency, not the gate's verdict). A first run makes version 1 the champion and deploys
it. Then a client thread sends one-row requests continuously, 10,000 rows (resampled with
noise) are appended, a run is started, and the clock stops at the first answer from version
2. The loop's per-step durations are printed with the totals.

Target: <= budget + 20 s, zero failed requests.

Run: ``python bench/loop.py [--budget-s 20] [--rows 10000]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loopml.cli.demo import CONTRACT, TARGET, _rows
from loopml.client import Client
from loopml.core.errors import LoopmlError
from loopml.pipelines import loops

PROJECT, TABLE, MODEL, DEPLOYMENT = "bench", "rows", "loop", "loop-api"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _more_rows(base: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(7)
    picked = rng.integers(0, len(base), size=count)
    out = []
    for i in picked:
        row = dict(base[int(i)])
        for key, value in row.items():
            if key != TARGET:
                row[key] = float(value) * float(rng.normal(1.0, 0.02))
        out.append(row)
    return out


class Traffic(threading.Thread):
    """One-row requests in a loop; counts answers by model version and failures."""

    def __init__(self, url: str, row: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.client = Client(url, timeout=30)
        self.row = {k: v for k, v in row.items() if k != TARGET}
        self.stop = threading.Event()
        self.sent = self.failed = 0
        self.first_new: float | None = None
        self.new_version: int | None = None

    def run(self) -> None:
        http = self.client._http
        path = f"/projects/{PROJECT}/deployments/{DEPLOYMENT}/predict"
        while not self.stop.is_set():
            self.sent += 1
            try:
                answer = http.request("POST", path, json={"instances": [self.row]})
            except LoopmlError:
                self.failed += 1
                continue
            version = answer.headers.get("x-loopml-model-version")
            if (
                self.new_version is not None
                and self.first_new is None
                and str(version) == str(self.new_version)
            ):
                self.first_new = time.monotonic()
            time.sleep(0.01)


def _inputs(budget_s: float) -> dict[str, Any]:
    return {
        "table": TABLE,
        "target": TARGET,
        "model": MODEL,
        "deployment": DEPLOYMENT,
        "budget_s": budget_s,
        "strategy": "direct",
    }


def _steps(client: Client, run_id: str) -> str:
    run = client.pipelines.get_run(run_id, project=PROJECT)
    parts = []
    for step in run.steps or []:
        if step.started_at and step.finished_at:
            parts.append(f"{step.name} {(step.finished_at - step.started_at).total_seconds():.1f}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-s", type=float, default=20.0)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="loopml-bench-loop-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env.update(LOOPML_HOME=str(home), OMP_WAIT_POLICY="passive")
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli.main", "up", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with Client(url, timeout=60) as client:
            for _ in range(300):
                try:
                    client.health()
                    break
                except LoopmlError:
                    time.sleep(0.1)
            client.projects.create(PROJECT)
            base = _rows()
            client.tables.append_records(PROJECT, TABLE, base)
            client.tables.set_contract(PROJECT, TABLE, CONTRACT)
            client.pipelines.apply(loops.text("retrain"), project=PROJECT)
            client.models.create(MODEL, project=PROJECT)
            client.models.set_gate_policy(MODEL, "{}", project=PROJECT)
            first = client.pipelines.run("retrain", inputs=_inputs(args.budget_s), project=PROJECT)
            done = client.pipelines.wait(first.id, timeout_s=600, poll_s=0.5, project=PROJECT)
            print(f"first run {done.status.value}: {_steps(client, first.id)}")
            traffic = Traffic(url, base[0])
            traffic.start()
            time.sleep(1.0)
            more = _more_rows(base, args.rows)
            traffic.new_version = 2
            began = time.monotonic()
            for start in range(0, len(more), 2_500):
                client.tables.append_records(PROJECT, TABLE, more[start : start + 2_500])
            appended = time.monotonic() - began
            run = client.pipelines.run("retrain", inputs=_inputs(args.budget_s), project=PROJECT)
            done = client.pipelines.wait(run.id, timeout_s=600, poll_s=0.25, project=PROJECT)
            while traffic.first_new is None and time.monotonic() - began < 600:
                time.sleep(0.05)
            traffic.stop.set()
            traffic.join(10)
            total = (traffic.first_new or time.monotonic()) - began
            target = args.budget_s + 20
            print(f"retrain run {done.status.value}: {_steps(client, run.id)}")
            print(f"append {args.rows} rows: {appended:.1f} s")
            print(
                f"append -> new champion answering: {total:.1f} s "
                f"(target <= {target:.0f} s: {'met' if total <= target else 'MISSED'})"
            )
            print(f"requests during the swap: {traffic.sent}, failed: {traffic.failed}")
    finally:
        server.terminate()
        server.wait(15)
        log.close()


if __name__ == "__main__":
    main()
