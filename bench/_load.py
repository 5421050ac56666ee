"""The load generators of ``bench/serving.py``: wrk (``-t1``, a Lua script for the POST body
and headers) pinned to the load core, else an asyncio raw-socket client in this process; each
reports req/s, p50, p99, errors and how busy each core was during the measurement."""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

LOAD_CORE = 1


@dataclass
class Result:
    rps: float
    p50: float  # seconds
    p99: float
    errors: int
    core_busy: dict[int, float]  # core -> busy fraction during the measurement
    cpu_s: dict[int, float] = field(default_factory=dict)
    """CPU seconds (user + system) each watched process used during the measurement."""
    seconds: float = 0.0

    def cpu_per_request(self, pids: Iterable[int]) -> float:
        """CPU seconds per answered request of ``pids`` together (NaN if none was watched)."""
        used = [self.cpu_s[pid] for pid in pids if pid in self.cpu_s]
        requests = self.rps * self.seconds
        return sum(used) / requests if used and requests else float("nan")


def _core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat."""
    times: dict[int, tuple[int, int]] = {}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return times
    for line in lines:
        match = re.match(r"cpu(\d+) (.*)", line)
        if match:
            values = [int(v) for v in match.group(2).split()]
            idle = values[3] + values[4]
            times[int(match.group(1))] = (sum(values) - idle, sum(values))
    return times


def _busy(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> dict[int, float]:
    return {
        core: (after[core][0] - before[core][0]) / max(1, after[core][1] - before[core][1])
        for core in before
        if core in after
    }


def _process_cpu(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds so far of each of ``pids`` still running."""
    used: dict[int, float] = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        used[pid] = times.user + times.system
    return used


def _cpu_used(before: dict[int, float], pids: Sequence[int]) -> dict[int, float]:
    after = _process_cpu(pids)
    return {pid: after[pid] - before[pid] for pid in before if pid in after}


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _wrk_time(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unparsed wrk time {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _wrk(
    url: str,
    body: bytes,
    connections: int,
    seconds: float,
    script_dir: Path,
    headers: dict[str, str],
    watch: Sequence[int] = (),
) -> Result:
    script = script_dir / "post.lua"
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"{extra}wrk.body = [[{body.decode()}]]\n"
    )
    base = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{connections}", "--latency"]
    base += ["-s", str(script)]
    subprocess.run([*base, "-d2s", url], check=True, capture_output=True)  # warm-up
    before = _core_times()
    cpu_before = _process_cpu(watch)
    out = subprocess.run(
        [*base, f"-d{seconds:g}s", "--timeout", "10s", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    busy = _busy(before, _core_times())
    cpu = _cpu_used(cpu_before, watch)
    latency = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+(?:us|ms|s|m))\s*$", out, re.M))
    if not {"50", "99"} <= latency.keys():
        raise RuntimeError(f"wrk's output has no 50%/99% latency lines:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    p50, p99 = _wrk_time(latency["50"]), _wrk_time(latency["99"])
    return Result(rps, p50, p99, errors, busy, cpu, seconds)


class _Connection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for these servers."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, extra: str = ""
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.extra = extra  # more header lines, each ending in CRLF

    @classmethod
    async def open(cls, port: int, headers: dict[str, str] | None = None) -> _Connection:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        return cls(*await asyncio.open_connection("127.0.0.1", port), extra)

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        port = self.writer.get_extra_info("peername")[1]
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{self.extra}\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _one(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = await _Connection.open(port)
    try:
        return await connection.request("POST", path, body)
    finally:
        await connection.close()


async def _clients(
    port: int, path: str, body: bytes, connections: int, seconds: float, headers: dict[str, str]
) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        connection = await _Connection.open(port, headers)
        while time.perf_counter() < stop:
            started = time.perf_counter()
            status, _ = await connection.request("POST", path, body)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
        await connection.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return latencies, errors


def _asyncio_load(
    url: str,
    body: bytes,
    connections: int,
    seconds: float,
    headers: dict[str, str],
    watch: Sequence[int] = (),
) -> Result:
    match = re.match(r"http://127\.0\.0\.1:(\d+)(/.*)", url)
    assert match, url
    port, path = int(match.group(1)), match.group(2)
    asyncio.run(_clients(port, path, body, connections, 2.0, headers))  # warm-up
    before = _core_times()
    cpu_before = _process_cpu(watch)
    latencies, errors = asyncio.run(_clients(port, path, body, connections, seconds, headers))
    busy = _busy(before, _core_times())
    cpu = _cpu_used(cpu_before, watch)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    rps = len(latencies) / seconds
    return Result(rps, statistics.median(ordered), p99, errors, busy, cpu, seconds)


def measure(
    url: str,
    body: bytes,
    args: argparse.Namespace,
    work: Path,
    connections: int | None = None,
    headers: dict[str, str] | None = None,
    watch: Sequence[int] = (),
) -> Result:
    """``args.seconds`` of 1-request-at-a-time load per connection on ``url`` (after a 2 s
    warm-up), with ``args.generator``; ``headers`` are sent with every request; the CPU
    time of the processes in ``watch`` is taken for the measured seconds."""
    connections = connections or args.connections
    if args.generator == "wrk":
        return _wrk(url, body, connections, args.seconds, work, headers or {}, watch)
    return _asyncio_load(url, body, connections, args.seconds, headers or {}, watch)


def timed_first(port: int, path: str, body: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    status, _ = asyncio.run(_one(port, path, body))
    return time.perf_counter() - started, status
