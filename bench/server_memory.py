"""The platform process's resident memory before and after a barrage-like load (issue 36).

Starts ``loopml up`` on a fresh home once per variant (environment overrides), waits until
it is idle, drives ``tests/e2e/barrage.py``'s load, then idles again, and prints the figures
side by side: idle, right after each round of the load, 15 s after it and after ``--idle``
seconds (a minute by default: issue 51 asks for under 400 MB within one). The variants are
the suspects of the growth, each switched on its own, so the difference names the cause;
``--before COMMIT`` runs that commit's code first, the comparison of the same run.

    python bench/server_memory.py [--clients 4] [--tables 10] [--idle 60] [--only NAME...]
        [--before COMMIT]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.barrage import KINDS, Memory, memory, run  # noqa: E402

VARIANTS: dict[str, dict[str, str]] = {
    "current": {},
    "no-heap-trim": {"LOOPML_SERVER_HEAP_TRIM_STEP_BYTES": "0"},
    "glibc-arenas": {"LOOPML_SERVER_MALLOC_ARENAS": "0"},
    "neither": {"LOOPML_SERVER_HEAP_TRIM_STEP_BYTES": "0", "LOOPML_SERVER_MALLOC_ARENAS": "0"},
    "arrow-pool-mimalloc": {"LOOPML_SERVER_ARROW_MEMORY_POOL": "mimalloc"},
    "arrow-pool-jemalloc": {"LOOPML_SERVER_ARROW_MEMORY_POOL": "jemalloc"},
    "mmap-threshold-128k": {"MALLOC_MMAP_THRESHOLD_": "131072"},
}
"""Each suspect on its own: the platform's knob set back to the old default, or glibc's
allocator tuned by its environment variables (``man mallopt``)."""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _measure(
    extra: dict[str, str],
    src: str,
    clients: int,
    tables: int,
    idle: float,
    kinds: frozenset[str],
    rounds: int,
) -> list[Memory]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env |= {"OMP_WAIT_POLICY": "passive", "PYTHONPATH": src, **extra}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        env["LOOPML_HOME"] = home
        command = [sys.executable, "-m", "loopml.cli.main", "up", "--port", str(port)]
        with open(Path(home) / "server.log", "wb") as log:
            proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/api/v1/health", timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError((Path(home) / "server.log").read_text()) from None
                    time.sleep(0.05)
            time.sleep(idle)
            figures = [memory(proc.pid)]
            for round_no in range(rounds):
                run(url, clients, tables, kinds, round_no)
                figures.append(memory(proc.pid))
            time.sleep(min(15.0, idle))
            figures.append(memory(proc.pid))
            time.sleep(max(idle - 15.0, 0.0))
            figures.append(memory(proc.pid))
            return figures
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--tables", type=int, default=10, help="tables per client (x2: files)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds idle, before and after")
    parser.add_argument("--rounds", type=int, default=3, help="loads in a row, new tables each")
    parser.add_argument("--only", nargs="*", default=["current", "neither"], choices=list(VARIANTS))
    parser.add_argument(
        "--kinds", nargs="*", default=sorted(KINDS), help="besides ingest: sql, read, fuzz"
    )
    parser.add_argument(
        "--before",
        metavar="COMMIT",
        help="also run the baseline on this commit's src/ (git archive), first",
    )
    args = parser.parse_args()
    print(
        f"{'variant':<24} idle, after each round, 15 s after, {args.idle:.0f} s after (MB); "
        "growth over idle"
    )
    here = str(ROOT / "src")
    runs = [(name, here, VARIANTS[name]) for name in args.only]
    with tempfile.TemporaryDirectory() as before:
        if args.before:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.before, "src"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", before], input=archive, check=True)
            runs.insert(0, (f"baseline@{args.before[:8]}", f"{before}/src", {}))
        for name, src, extra in runs:
            _print(
                name,
                _measure(
                    extra,
                    src,
                    args.clients,
                    args.tables,
                    args.idle,
                    frozenset(args.kinds),
                    args.rounds,
                ),
            )


def _print(name: str, figures: list[Memory]) -> None:
    steps = " → ".join(f"{f.rss:.0f}" for f in figures)
    idle, rested = figures[0], figures[-1]
    print(f"{name:<24} {steps}  +{rested.rss - idle.rss:.0f} MB", flush=True)
    print(f"{'':<24} anon: " + " → ".join(f"{f.anonymous:.0f}" for f in figures), flush=True)


if __name__ == "__main__":
    main()
