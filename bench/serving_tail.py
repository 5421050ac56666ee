"""When the slow requests through the gateway process come (issue 53, item 3: V2's p99 through
the gateway process had been 7-8 x ``/predict``'s in three runs of ``bench/serving.py``).

One ``loopml up`` as ``bench/serving.py`` starts it (the gateway process in front, the
platform, the forest's replica and the woken scale-to-zero deployment, all on core 0; the
load on core 1), then ``--rounds`` rounds of ``/predict`` and V2 infer (one ``[1, 30]``
FP32 tensor) through the gateway process, 32 connections, ``--seconds`` each. Every
request's start and latency is kept, and every 20 ms each serving process's CPU time (the
gateway process, the platform, the replica). Per run it prints req/s, p50, p99, and the
tenths of a second holding requests slower than 2.5 x the p50 (the tail), with the
seconds between them and each process's share of core 0 in those tenths against the rest.

Read with the prediction log's flush in mind (``PredictionLog``: at most once a second, its
rows built in the platform): a tail that comes once a second, while the platform's share of
the core rises, is the log's work taking the core from the gateway and the replica.

With ``--monitor process,thread`` it measures the monitor's rounds in a process of their own
at a lower priority (``monitor.process``, the default) against a thread of the platform, a
platform each, and prints both side by side; ``--monitor-interval 5`` puts a round in every
run (the product's interval is 30 s).

Run: ``python bench/serving_tail.py [--seconds 5] [--rounds 2] [--monitor process,thread]
[--monitor-interval 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import orjson
import psutil
from _load import LOAD_CORE, _Connection, timed_first
from _serving_platform import (
    DEPLOYMENT,
    MODEL,
    ZERO_DEPLOYMENT,
    _deploy,
    _gateway_pids,
    _model,
    _platform,
    _replica_pids,
)

SAMPLE_S = 0.02
MONITOR_MODULE = "loopml.platform.monitor_process"
MONITOR_ENV = {
    "process": {"LOOPML_MONITOR_PROCESS": "true"},
    "thread": {"LOOPML_MONITOR_PROCESS": "false"},
    "off": {"LOOPML_MONITOR_ENABLED": "false"},
}
MODEL_AND_FRAME: list = []
pids_started = [0.0]  # when the platform first answered (perf_counter)
SLOW = 2.5  # a request slower than this many p50s is in the tail


async def _load(port: int, path: str, body: bytes, seconds: float) -> list[tuple[float, float]]:
    """32 connections, one request at a time each; (start, latency) per request."""
    seen: list[tuple[float, float]] = []
    stop = time.perf_counter() + seconds

    async def client() -> None:
        connection = await _Connection.open(port)
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await connection.request("POST", path, body)
            seen.append((started, time.perf_counter() - started))
        await connection.close()

    await asyncio.gather(*(client() for _ in range(32)))
    return seen


def _sample(pids: dict[str, int], stop: threading.Event, out: list[tuple[float, dict]]) -> None:
    processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def cpu() -> dict[str, float]:
        return {name: sum(p.cpu_times()[:2]) for name, p in processes.items()}

    last = cpu()
    while not stop.wait(SAMPLE_S):
        now = cpu()
        out.append((time.perf_counter(), {n: now[n] - last[n] for n in now}))
        last = now


def _run(
    port: int, path: str, body: bytes, label: str, pids: dict[str, int], seconds: float
) -> tuple[float, float, float]:
    """Print one run's figures; its (req/s, p99, slowest)."""
    asyncio.run(_load(port, path, body, 2.0))  # warm-up
    stop, samples = threading.Event(), []
    began = time.perf_counter()
    sampler = threading.Thread(target=_sample, args=(pids, stop, samples))
    sampler.start()
    seen = asyncio.run(_load(port, path, body, seconds))
    stop.set()
    sampler.join()
    latencies = sorted(latency for _, latency in seen)
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99)]
    t0 = min(started for started, _ in seen)
    tenths = sorted(
        {round((s - t0) * 10) for s, latency in seen if latency > SLOW * p50 and latency > 0.01}
    )
    since = began - pids_started[0]
    print(
        f"\n{label}, {since:.0f} s after the platform answered: "
        f"{len(seen) / seconds:.0f} req/s, p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
        f"max {latencies[-1] * 1e3:.1f} ms"
    )
    print(f"  tenths of a second with a request over {SLOW:g} x p50: {[t / 10 for t in tenths]}")
    starts = [tenths[0]] + [b for a, b in itertools.pairwise(tenths) if b - a > 2] if tenths else []
    gaps = [round((b - a) / 10, 1) for a, b in itertools.pairwise(starts)]
    print(f"  seconds between the tail's spells: {gaps}")
    inside = dict.fromkeys(pids, 0.0)
    outside = dict.fromkeys(pids, 0.0)
    spans = {"in the tail": 0, "elsewhere": 0}
    for when, used in samples:
        tenth = round((when - t0) * 10)
        hot = any(abs(tenth - t) <= 1 for t in tenths)
        spans["in the tail" if hot else "elsewhere"] += 1
        for name, seconds_used in used.items():
            (inside if hot else outside)[name] += seconds_used
    for where, totals in (("in the tail", inside), ("elsewhere", outside)):
        span = max(spans[where], 1) * SAMPLE_S
        shares = ", ".join(f"{n} {totals[n] / span:.0%}" for n in pids)
        print(f"  share of core 0 {where:<12} ({span:4.1f} s): {shares}")
    return len(seen) / seconds, p99, latencies[-1]


def _monitor_pid(platform_pid: int) -> int | None:
    for child in psutil.Process(platform_pid).children():
        if MONITOR_MODULE in child.cmdline():
            return child.pid
    return None


def _modes(text: str) -> list[str]:
    modes = text.split(",")
    unknown = set(modes) - set(MONITOR_ENV)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown monitor mode(s) {sorted(unknown)}")
    return modes


def _measure(mode: str, args: argparse.Namespace, body: bytes, v2: bytes) -> dict:
    """One platform with the monitor as ``mode`` says, ``--rounds`` rounds of each path."""
    model, frame = MODEL_AND_FRAME
    front = {"LOOPML_GATEWAY_FRONT": "true", "LOOPML_GATEWAY_PROCESSES": "1"}
    front.update(MONITOR_ENV[mode])
    if args.monitor_interval:
        front["LOOPML_MONITOR_INTERVAL_S"] = str(args.monitor_interval)
    print(f"\n=== monitor: {mode} ===")
    found: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with _platform(home, extra_env=front) as (url, platform_port, platform_pid):
            pids_started[0] = time.perf_counter()
            _deploy(url, home, model, frame)
            timed_first(platform_port, f"/deployments/{ZERO_DEPLOYMENT}/predict", body)
            port = int(url.rsplit(":", 1)[1])
            (gateway,) = _gateway_pids(platform_pid)
            (replica,) = _replica_pids(platform_pid, DEPLOYMENT)
            pids = {"gateway": gateway, "platform": platform_pid, "replica": replica}
            monitor = _monitor_pid(platform_pid)
            if monitor is not None:
                pids["monitor"] = monitor
            paths = {
                "/predict": (f"/deployments/{DEPLOYMENT}/predict", body),
                "V2 [1, 30]": (f"/deployments/{DEPLOYMENT}/v2/models/{MODEL}/infer", v2),
            }
            for _ in range(args.rounds):
                for label, (path, payload) in paths.items():
                    seen = _run(port, path, payload, label, pids, args.seconds)
                    found.setdefault(label, []).append(seen)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--monitor",
        type=_modes,
        default=["process"],
        help="where the monitor's rounds run, a platform each, in turns: process (the "
        "default, monitor.process), thread (monitor.process=false), off "
        "(monitor.enabled=false); for example process,thread",
    )
    parser.add_argument(
        "--monitor-interval",
        type=float,
        default=0.0,
        help="the monitor's interval (s; default: the product's 30 s). A short one puts a "
        "round in every run: the worst case",
    )
    parser.add_argument("--monitor-off", action="store_true", help="the same as --monitor off")
    args = parser.parse_args()
    if args.monitor_off:
        args.monitor = ["off"]
    os.sched_setaffinity(0, {LOAD_CORE})
    model, frame = _model()
    MODEL_AND_FRAME[:] = [model, frame]
    row = frame.iloc[:1].to_numpy(dtype="float32").ravel().tolist()
    body = orjson.dumps({"instances": [dict(zip(frame.columns, row, strict=True))]})
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}
    v2 = orjson.dumps({"inputs": [tensor]})
    results: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for mode in args.monitor:  # a mode named twice: its rounds add up
        for label, seen in _measure(mode, args, body, v2).items():
            results.setdefault(mode, {}).setdefault(label, []).extend(seen)
    print("\nsummary (median over the rounds; slowest: each round's slowest request)")
    print(f"{'monitor':<8} {'path':<11} {'req/s':>7} {'p99 ms':>7}  slowest ms")
    for mode, found in results.items():
        for label, seen in found.items():
            rate = statistics.median(r for r, _, _ in seen)
            p99 = statistics.median(p for _, p, _ in seen)
            slowest = " ".join(f"{m * 1e3:.0f}" for _, _, m in seen)
            print(f"{mode:<8} {label:<11} {rate:7.0f} {p99 * 1e3:7.1f}  {slowest}")


if __name__ == "__main__":
    main()
