"""Startup figures: `loopml --help` and `loopml up` until healthy, against baselines.

Prints ratios as well as times, since the machine is shared and noisy:
- `loopml --help` against a bare `python -c pass` (the interpreter's own start);
- `loopml up` (spawn → first healthy `GET /api/v1/health`), cold on an empty home (creates the
  database) and warm on an existing one, against `python -c "import fastapi, sqlalchemy"`
  and against a bare uvicorn app of the same routes (`bench/_bare_routes_app.py`), each up
  and each bare start taken in turn in the same rounds; with each, the CPU seconds its
  process had spent when it answered (what a loaded machine does not inflate as much).

And the resident memory of an idle `loopml up` on an empty home, 10 s after it is healthy
(its background loops have run), as a new user's `ps` shows it.

Targets (issue 53): `--help` under 0.25 s, `up` ready under 2 s; (the serving data path
issue) `loopml up` idle RSS <= 250 MB. `--no-rss` skips the memory figures (10 s each).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

RUNS = 7
ROUNDS = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _time(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _ready(
    command: list[str],
    port: int,
    env: dict[str, str],
    rss: list[float] | None = None,
    gateways: list[float] | None = None,
    cpu: list[float] | None = None,
) -> float:
    """Seconds from spawning ``command`` to a healthy answer on ``port``; in ``cpu``, the CPU
    seconds its process had spent then; with ``rss``, also its resident MB after 10 idle
    seconds, and in ``gateways`` its gateway processes' together."""
    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5):
                    ready = time.perf_counter() - started
                platform = psutil.Process(proc.pid)
                if cpu is not None:
                    times = platform.cpu_times()
                    cpu.append(times.user + times.system)
                if rss is not None:
                    time.sleep(10)
                    rss.append(platform.memory_info().rss / 1e6)
                    children = platform.children(recursive=True)
                    served = [c for c in children if "loopml.serve.gateway" in c.cmdline()]
                    if gateways is not None:
                        gateways.append(sum(c.memory_info().rss for c in served) / 1e6)
                return ready
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"{command} did not become healthy in 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _up_ready(
    env: dict[str, str],
    rss: list[float] | None = None,
    gateways: list[float] | None = None,
    cpu: list[float] | None = None,
) -> float:
    port = _free_port()
    command = [sys.executable, "-m", "loopml.cli.main", "up", "--port", str(port)]
    return _ready(command, port, env, rss, gateways, cpu)


def _bare_ready(env: dict[str, str], cpu: list[float]) -> float:
    port = _free_port()
    app = "bench._bare_routes_app:app"
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "error"]
    return _ready(command, port, env, cpu=cpu)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def main() -> None:
    measure_rss = "--no-rss" not in sys.argv[1:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    loopml = str(Path(sys.executable).with_name("loopml"))
    bare = _median([_time([sys.executable, "-c", "pass"], env) for _ in range(RUNS)])
    helps = _median([_time([loopml, "--help"], env) for _ in range(RUNS)])
    libs = _median(
        [_time([sys.executable, "-c", "import fastapi, sqlalchemy"], env) for _ in range(RUNS)]
    )
    cold, warm, rss, gateways, alone = [], [], [], [], []
    routes, routes_cpu, cold_cpu, warm_cpu = [], [], [], []
    for _ in range(ROUNDS):
        routes.append(_bare_ready(env, routes_cpu))
        with tempfile.TemporaryDirectory() as home:
            env["LOOPML_HOME"] = home
            cold.append(_up_ready(env, cpu=cold_cpu))
            warm.append(_up_ready(env, cpu=warm_cpu))
            if measure_rss:
                _up_ready(env, rss, gateways)
                # The same without gateway processes: the platform serving its port alone.
                _up_ready({**env, "LOOPML_GATEWAY_FRONT": "false"}, alone)
    route_s = _median(routes)
    print(f"{ROUNDS} rounds; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"python -c pass                  {bare * 1000:7.0f} ms")
    print(f"loopml --help                   {helps * 1000:7.0f} ms  ({helps / bare:.1f}x bare)")
    print(f"import fastapi, sqlalchemy      {libs * 1000:7.0f} ms")
    print(
        f"bare uvicorn, same routes       {route_s * 1000:7.0f} ms  "
        f"(cpu {_median(routes_cpu) * 1000:.0f} ms)"
    )
    for label, times, cpu in (("empty home   ", cold, cold_cpu), ("existing home", warm, warm_cpu)):
        print(
            f"loopml up ready, {label}  {_median(times) * 1000:7.0f} ms  "
            f"({_median(times) / route_s:.2f}x the bare routes, {_median(times) / libs:.1f}x "
            f"the import baseline; cpu {_median(cpu) * 1000:.0f} ms, "
            f"{_median(cpu) / _median(routes_cpu):.2f}x the bare routes')"
        )
    if measure_rss:
        print(
            f"loopml up idle RSS              {_median(rss):7.0f} MB  (the platform process; "
            f"its gateway process {_median(gateways):.0f} MB more)"
        )
        print(f"  with gateway.front=false      {_median(alone):7.0f} MB  (one process)")
    print("targets: --help < 250 ms, up ready < 2000 ms, up idle RSS <= 250 MB")


if __name__ == "__main__":
    main()
