"""Startup figures: `loopml --help` and `loopml up` until healthy, against baselines.

Prints ratios as well as times, since the machine is shared and noisy:
- `loopml --help` against a bare `python -c pass` (the interpreter's own start);
- `loopml up` (spawn → first healthy `GET /api/v1/health`), cold on an empty home (creates the
  database) and warm on an existing one, against `python -c "import fastapi, sqlalchemy"`.

And the resident memory of an idle `loopml up` on an empty home, 10 s after it is healthy
(its background loops have run), as a new user's `ps` shows it.

Targets (issue 2): `--help` under 0.5 s, `up` ready under 3 s; (the serving data path
issue) `loopml up` idle RSS <= 250 MB.
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _time(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _up_ready(
    env: dict[str, str], rss: list[float] | None = None, gateways: list[float] | None = None
) -> float:
    """Seconds from spawn to healthy; with ``rss``, also the platform process's resident MB
    after 10 idle seconds, and in ``gateways`` its gateway processes' together."""
    port = _free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli.main", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - started < 30:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                    ready = time.perf_counter() - started
                if rss is not None:
                    import psutil

                    time.sleep(10)
                    platform = psutil.Process(proc.pid)
                    rss.append(platform.memory_info().rss / 1e6)
                    children = platform.children(recursive=True)
                    served = [c for c in children if "loopml.serve.gateway" in c.cmdline()]
                    if gateways is not None:
                        gateways.append(sum(c.memory_info().rss for c in served) / 1e6)
                return ready
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("loopml up did not become healthy in 30 s")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def main() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    loopml = str(Path(sys.executable).with_name("loopml"))
    bare = _median([_time([sys.executable, "-c", "pass"], env) for _ in range(RUNS)])
    helps = _median([_time([loopml, "--help"], env) for _ in range(RUNS)])
    libs = _median(
        [_time([sys.executable, "-c", "import fastapi, sqlalchemy"], env) for _ in range(RUNS)]
    )
    cold, warm, rss, gateways, alone = [], [], [], [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as home:
            env["LOOPML_HOME"] = home
            cold.append(_up_ready(env))
            warm.append(_up_ready(env, rss, gateways))
            # The same without gateway processes: the platform serving its port alone.
            _up_ready({**env, "LOOPML_GATEWAY_FRONT": "false"}, alone)
    print(f"python -c pass                  {bare * 1000:7.0f} ms")
    print(f"loopml --help                   {helps * 1000:7.0f} ms  ({helps / bare:.1f}x bare)")
    print(f"import fastapi, sqlalchemy      {libs * 1000:7.0f} ms")
    print(
        f"loopml up ready, empty home     {_median(cold) * 1000:7.0f} ms  "
        f"({_median(cold) / libs:.1f}x the import baseline)"
    )
    print(
        f"loopml up ready, existing home  {_median(warm) * 1000:7.0f} ms  "
        f"({_median(warm) / libs:.1f}x the import baseline)"
    )
    print(
        f"loopml up idle RSS              {_median(rss):7.0f} MB  (the platform process; "
        f"its gateway process {_median(gateways):.0f} MB more)"
    )
    print(f"  with gateway.front=false      {_median(alone):7.0f} MB  (one process)")
    print("targets: --help < 500 ms, up ready < 3000 ms, up idle RSS <= 250 MB")


if __name__ == "__main__":
    main()
