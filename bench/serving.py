"""Model-serving benchmark: the server process against the runtime in-process and against
scikit-learn itself, and micro-batching on against off.

One model (breast cancer, 30 float columns, a 100-tree random forest, or with ``--model
logreg`` a scaler + logistic regression pipeline), packaged to ONNX. Measured, in one run:

1. in-process, per call on the same rows: scikit-learn ``predict`` + ``predict_proba`` on a
   DataFrame, ``ModelRuntime.predict`` (ONNX Runtime) on checked columns, and the runtime
   including the JSON-records check (``columns_from_instances``);
2. the server process (``python -m loopml.serve``) over HTTP/1.1 keep-alive, one client:
   1-row and 100-row ``POST /predict`` latency p50/p99;
3. N concurrent clients sending 1-row requests, batching on (the defaults) then off
   (``--max-batch-size 1``): throughput, p50/p99, and the mean requests per model call.

The clients are raw asyncio sockets (no HTTP library), so that as little client CPU as
possible competes with the server on a small machine. Run: ``python bench/serving.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import orjson
import pandas as pd

from loopml.serve import ModelRuntime
from loopml.train.packaging import ModelPackage, load_model, package_model


def _model(kind: str) -> tuple[Any, pd.DataFrame]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    if kind == "forest":
        model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(frame, target), frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = orjson.loads(frame.to_json(orient="records"))
    return loaded


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def _timed(fn: Callable[[], object], seconds: float) -> list[float]:
    for _ in range(20):
        fn()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def in_process(
    model: Any, runtime: ModelRuntime, frame: pd.DataFrame, seconds: float
) -> dict[int, dict[str, tuple[float, float]]]:
    return {rows: _in_process_rows(model, runtime, frame.iloc[:rows], seconds) for rows in (1, 100)}


def _in_process_rows(
    model: Any, runtime: ModelRuntime, part: pd.DataFrame, seconds: float
) -> dict[str, tuple[float, float]]:
    records = _records(part)
    columns = runtime.columns_from_instances(records)

    def native() -> None:
        model.predict(part)
        model.predict_proba(part)

    def checked() -> None:
        runtime.predict(runtime.columns_from_instances(records))

    return {
        "sklearn": _percentiles(_timed(native, seconds)),
        "onnx runtime": _percentiles(_timed(lambda: runtime.predict(columns), seconds)),
        "runtime + JSON check": _percentiles(_timed(checked, seconds)),
    }


# ---------------------------------------------------------------- the server process


@contextmanager
def server_process(package: ModelPackage, port: int, *extra: str) -> Iterator[None]:
    identity = ["--name", "bench", "--version", "1", "--deployment", "bench"]
    command = [sys.executable, "-m", "loopml.serve", "--package", str(package.path)]
    command += ["--manifest-sha256", package.manifest_sha256, *identity, "--port", str(port)]
    command += extra
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, _ = asyncio.run(_one("GET", port, "/v2/health/ready", b""))
                if status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("the server did not start")
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


class _Connection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for this server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
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


async def _one(method: str, port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = await _Connection.open(port)
    try:
        return await connection.request(method, path, body)
    finally:
        await connection.close()


async def _clients(port: int, body: bytes, clients: int, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        connection = await _Connection.open(port)
        for _ in range(5):  # warm up
            await connection.request("POST", "/predict", body)
        while time.perf_counter() < stop:
            started = time.perf_counter()
            status, _ = await connection.request("POST", "/predict", body)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
        await connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors


def _batch_mean(port: int) -> float:
    _, text = asyncio.run(_one("GET", port, "/metrics", b""))
    values = dict(re.findall(rb"loopml_model_batch_size_(sum|count)\{[^}]*\} (\S+)", text))
    return float(values[b"sum"]) / max(1.0, float(values[b"count"]))


def served(
    package: ModelPackage, frame: pd.DataFrame, clients: int, seconds: float
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    bodies = {rows: orjson.dumps({"instances": _records(frame.iloc[:rows])}) for rows in (1, 100)}
    port = free_port()
    with server_process(package, port):
        for rows, body in bodies.items():
            latencies, errors = asyncio.run(_clients(port, body, 1, seconds))
            results[f"1 client, {rows} rows"] = (latencies, errors, None)
        latencies, errors = asyncio.run(_clients(port, bodies[1], clients, seconds))
        results[f"{clients} clients, 1 row, batching on"] = (latencies, errors, _batch_mean(port))
    port = free_port()
    with server_process(package, port, "--max-batch-size", "1"):
        latencies, errors = asyncio.run(_clients(port, bodies[1], clients, seconds))
        results[f"{clients} clients, 1 row, batching off"] = (latencies, errors, _batch_mean(port))
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:9.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("forest", "logreg"), default="forest")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    args = parser.parse_args()

    model, frame = _model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        package = package_model(model, Path(tmp) / "pkg", sample=frame)
        runtime = ModelRuntime(load_model(package.path, manifest_sha256=package.manifest_sha256))
        assert runtime.format == "onnx", package.manifest.onnx_error
        local = in_process(model, runtime, frame, args.seconds / 2)
        remote = served(package, frame, args.clients, args.seconds)

    print(f"model: {args.model} on breast cancer (30 columns), {os.cpu_count()} CPUs")
    print("\nin-process, per call              p50 us    p99 us   us/row (p50)")
    for rows, kinds in local.items():
        for kind, (p50, p99) in kinds.items():
            print(f"  {rows:>3} rows  {kind:<21}{_us(p50)} {_us(p99)} {p50 * 1e6 / rows:9.1f}")
    print("\nserver process over HTTP          p50 us    p99 us   req/s    rows/call  errors")
    for name, (latencies, errors, batch) in remote.items():
        p50, p99 = _percentiles(latencies)
        rate = len(latencies) / args.seconds
        mean = f"{batch:9.1f}" if batch is not None else " " * 9
        print(f"  {name:<31}{_us(p50)} {_us(p99)} {rate:8.0f} {mean}  {errors}")

    def p50(samples: list[float]) -> float:
        return _percentiles(samples)[0]

    print("\nratios")
    for rows in (1, 100):
        kinds = ("sklearn", "onnx runtime", "runtime + JSON check")
        sk, onnx, full = (local[rows][kind][0] for kind in kinds)
        http = p50(remote[f"1 client, {rows} rows"][0])
        print(
            f"  {rows:>3} rows: sklearn / onnx runtime = {sk / onnx:6.1f}x;  server p50 / "
            f"in-process runtime+check p50 = {http / full:6.1f}x;  server p50 / sklearn p50 = "
            f"{http / sk:5.2f}x"
        )
    on = remote[f"{args.clients} clients, 1 row, batching on"][0]
    off = remote[f"{args.clients} clients, 1 row, batching off"][0]
    print(
        f"  {args.clients} clients: throughput batching on / off = {len(on) / len(off):5.2f}x;  "
        f"p50 on / off = {p50(on) / p50(off):5.2f}x"
    )


if __name__ == "__main__":
    main()
