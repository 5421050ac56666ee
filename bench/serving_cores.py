"""Gateway processes over both cores against one core, in one run (issue 18's "both cores").

``loopml up`` with two gateway processes (``gateway.port``) and a deployment of two replicas
of ``bench/serving.py``'s 100-tree forest (ONNX). Measured twice, in turns, ``--rounds``
times:

- **two cores**: every server process (platform, gateway processes, replicas) may run on
  cores 0 and 1, and so may wrk, the load generator, which competes with them for both;
- **one core**: the same processes moved to core 0 (``sched_setaffinity``), wrk on core 1.

It prints each round's req/s and the ratio of the medians; the target is two cores >= 1.6 x
one core. ``python bench/serving_cores.py [--seconds 10] [--connections 64] [--rounds 2]``
(needs wrk: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import _load
import _serving_platform as serving
import orjson
import psutil
from _load import measure

TARGET = 1.6


def _pin(pids: list[int], cores: set[int]) -> None:
    for pid in pids:
        os.sched_setaffinity(pid, cores)


def _server_pids(platform_pid: int) -> list[int]:
    children = psutil.Process(platform_pid).children(recursive=True)
    return [platform_pid, *(c.pid for c in children)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.generator = "wrk"
    if shutil.which("wrk") is None or (os.cpu_count() or 1) < 2:
        sys.exit("needs wrk and two cores")
    started = time.monotonic()
    # Servers start free to use both cores; each measurement pins them as it says.
    serving.SERVER_CORE = "0,1"
    model, frame = serving._model()
    body = orjson.dumps({"instances": serving._records(frame.iloc[:1])})
    import loopml
    from loopml.client import Client

    both, one = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        port = serving.free_port()
        env = {"LOOPML_GATEWAY_PORT": str(port), "LOOPML_GATEWAY_PROCESSES": "2"}
        with serving._platform(home, extra_env=env) as (url, _, platform_pid):
            with Client(url) as client:
                with loopml.start_run("bench-cores", client=client) as run:
                    run.log_model(model, sample=frame.head(20))
                version = client.models.register_version(serving.MODEL, run_id=run.id)
                client.deployments.create(
                    serving.DEPLOYMENT, f"{serving.MODEL}/{version.version}", min_replicas=2
                )
                client.deployments.wait(serving.DEPLOYMENT, timeout_s=180)
            target = f"http://127.0.0.1:{port}/deployments/{serving.DEPLOYMENT}/predict"
            servers = _server_pids(platform_pid)
            for _ in range(args.rounds):
                _pin(servers, {0, 1})
                _load.LOAD_CORE = "0,1"  # type: ignore[assignment]
                both.append(measure(target, body, args, work, watch=servers))
                _pin(servers, {0})
                _load.LOAD_CORE = 1
                one.append(measure(target, body, args, work, watch=servers))
    print(
        f"loopml up + 2 gateway processes + 2 replicas; wrk -t1 -c{args.connections}; "
        f"1-row POST to the gateway port, {args.seconds:g} s per measurement"
    )
    print(f"\n{'round':>7} {'two cores req/s':>16} {'one core req/s':>15}")
    for n, (b, o) in enumerate(zip(both, one, strict=True), 1):
        print(f"{n:7d} {b.rps:16.0f} {o.rps:15.0f}")
    two = statistics.median(r.rps for r in both)
    single = statistics.median(r.rps for r in one)
    ratio = two / single
    verdict = "met   " if ratio >= TARGET else "MISSED"
    print(
        f"\n  {verdict} two cores >= {TARGET} x one core: {ratio:.2f} x "
        f"({two:.0f} / {single:.0f}; wrk shares the two cores with the servers)"
    )
    print(f"  total bench time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
