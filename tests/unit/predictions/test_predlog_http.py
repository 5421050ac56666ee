"""The replica's prediction log over HTTP: ``HttpPredictionSink`` against a real platform
(the API app under uvicorn on a real port), and a real model-server process that logs."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from loopml.client import Client
from loopml.platform import create_api_app
from loopml.predictions.http_sink import HttpPredictionSink
from loopml.predictions.intake import PredictionRecord
from loopml.settings import Settings
from tests.conftest import free_port
from tests.unit.conftest import DEPLOYMENT, MODEL, VERSION, Served
from tests.waiting import eventually

TABLE = "churn_prod__predictions"
RECORDS_PATH = f"/api/v1/projects/default/tables/{TABLE}/records"


class PostCounter:
    """Counts the POSTs reaching the platform, per path (an ASGI wrapper, nothing mocked)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.posts: collections.Counter[str] = collections.Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts[scope["path"]] += 1
        await self.app(scope, receive, send)


@dataclass
class Platform:
    url: str
    counter: PostCounter

    def sql(self, query: str) -> list[dict[str, Any]]:
        with Client(self.url, timeout=30) as client:
            return client.sql("default", query, limit=100_000).records()


def platform_settings(home: Path) -> Settings:
    return Settings(home=home, database={"url": f"sqlite:///{home / 'loopml.db'}"})


@contextmanager
def serve_platform(home: Path, port: int | None = None) -> Iterator[Platform]:
    """The loopml API app served by uvicorn in a thread, on ``port`` (a free one by default)."""
    counter = PostCounter(create_api_app(platform_settings(home)))
    port = port or free_port()
    config = uvicorn.Config(
        counter, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started or not thread.is_alive(), 60, "the platform to start")
    assert server.started, "the platform's thread ended before it started"
    try:
        yield Platform(f"http://127.0.0.1:{port}", counter)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    with serve_platform(tmp_path / "platform") as running:
        yield running


def make_record(
    served: Served, rows: slice, inference_id: str, *, deployment: str = DEPLOYMENT
) -> PredictionRecord:
    """What the model server hands its sink for one request of ``rows``."""
    runtime = served.runtime
    columns = runtime.columns_from_instances(served.records(rows))
    prediction = runtime.predict(columns)
    return PredictionRecord(
        inference_id=inference_id,
        deployment=deployment,
        model=MODEL,
        version=VERSION,
        timestamp=time.time(),
        latency_s=0.0042,
        protocol="predict",
        inputs=columns.arrays,
        predictions=prediction.predictions,
        probabilities=prediction.probabilities,
        classes=runtime.classes,
    )


def _copies(record: PredictionRecord, count: int, prefix: str) -> list[PredictionRecord]:
    fields = {name: getattr(record, name) for name in record.__slots__}
    return [PredictionRecord(**{**fields, "inference_id": f"{prefix}-{i}"}) for i in range(count)]


def _wait(condition: Any, what: str, timeout: float = 30.0) -> None:
    eventually(condition, timeout, what)


def _ids(platform: Platform) -> list[str]:
    rows = platform.sql(f"SELECT inference_id FROM {TABLE}")
    return [r["inference_id"] for r in rows]


def test_records_are_posted_in_batches_and_land_once_each(
    cancer: Served, platform: Platform
) -> None:
    records = _copies(make_record(cancer, slice(0, 1), "x"), 2500, "req")
    sink = HttpPredictionSink(platform.url, "default", DEPLOYMENT, max_batch=1000, flush_ms=50)
    for record in records:
        sink.record(record)
    _wait(lambda: sink.stats.delivered == 2500, "2500 rows delivered")
    stats = sink.close()

    assert platform.counter.posts[RECORDS_PATH] == 3  # 1000 + 1000 + 500
    assert (stats.posts, stats.dropped, stats.refused, stats.lost) == (3, 0, 0, 0)
    ids = _ids(platform)
    assert sorted(ids) == sorted(r.inference_id for r in records)


def test_close_after_a_burst_posts_everything_still_queued(
    cancer: Served, platform: Platform
) -> None:
    records = _copies(make_record(cancer, slice(0, 3), "x"), 1700, "burst")
    # A flush interval far longer than the test: only full batches and close() post.
    sink = HttpPredictionSink(platform.url, "default", DEPLOYMENT, max_batch=1000, flush_ms=600_000)
    for record in records:
        sink.record(record)
    stats = sink.close(timeout_s=60)

    assert (stats.delivered, stats.pending, stats.lost, stats.dropped) == (5100, 0, 0, 0)
    counts = platform.sql(f"SELECT count(*) AS n, count(DISTINCT inference_id) AS ids FROM {TABLE}")
    assert counts == [{"n": 5100, "ids": 1700}]
    assert platform.counter.posts[RECORDS_PATH] == 6  # 5 full batches of 1000, then 100


def test_rows_hold_the_inputs_predictions_and_probabilities(
    mixed: Served, platform: Platform
) -> None:
    record = make_record(mixed, slice(0, 12), "mixed-1")
    sink = HttpPredictionSink(platform.url, "default", DEPLOYMENT, role="canary", flush_ms=0)
    sink.record(record)
    sink.close()

    rows = platform.sql(f"SELECT * FROM {TABLE} ORDER BY row_index")
    assert [r["row_index"] for r in rows] == list(range(12))
    sent = mixed.records(slice(0, 12))
    expected = mixed.runtime.predict(mixed.runtime.columns_from_instances(sent))
    assert expected.probabilities is not None
    classes = mixed.runtime.classes
    for row, instance, label, proba in zip(
        rows, sent, expected.predictions, expected.probabilities, strict=True
    ):
        assert orjson.loads(row["inputs"]) == instance  # NaN sent as null comes back null
        assert row["prediction"] == label
        assert row["prediction_value"] is None  # string classes have no numeric value
        logged = orjson.loads(row["probabilities"])
        assert list(logged) == classes
        assert [logged[c] for c in classes] == pytest.approx(proba.tolist())
        assert (row["inference_id"], row["deployment"], row["model"]) == (
            "mixed-1",
            DEPLOYMENT,
            MODEL,
        )
        assert (row["model_version"], row["role"], row["protocol"]) == (
            VERSION,
            "canary",
            "predict",
        )
        assert row["latency_ms"] == pytest.approx(4.2)
        logged_at = datetime.fromisoformat(str(row["ts"])).replace(tzinfo=UTC)
        assert logged_at.timestamp() == pytest.approx(record.timestamp, abs=1e-5)


def test_the_hot_path_never_waits_while_the_platform_is_down(
    cancer: Served, tmp_path: Path
) -> None:
    port = free_port()
    records = _copies(make_record(cancer, slice(0, 1), "x"), 2000, "down")
    sink = HttpPredictionSink(
        f"http://127.0.0.1:{port}", "default", DEPLOYMENT, flush_ms=10, retry_max_s=0.2
    )
    slowest = 0.0
    started = time.perf_counter()
    for record in records:
        before = time.perf_counter()
        sink.record(record)
        slowest = max(slowest, time.perf_counter() - before)
    total = time.perf_counter() - started
    # margin: 2000 calls took 0.0023 s at load 4.5, the slowest 4e-5 s: 1 s is 400x and
    # 0.05 s 1000x. A call that waited on the down platform would wait a post's retry
    # delay, 0.05 s and more.
    assert total < 1.0, f"2000 calls took {total:.3f} s"
    # margin: the slowest call took 4e-5 s at load 4.5; 0.05 s is 1000x.
    assert slowest < 0.05, f"the slowest call took {slowest:.4f} s"
    _wait(lambda: sink.stats.retries >= 2, "the sink to retry twice")
    assert sink.stats.delivered == 0
    assert sink.stats.pending == 2000

    with serve_platform(tmp_path / "platform", port) as platform:
        _wait(lambda: sink.stats.delivered == 2000, "2000 rows delivered")
        stats = sink.close()
        assert (stats.dropped, stats.lost, stats.refused) == (0, 0, 0)
        assert sorted(_ids(platform)) == sorted(r.inference_id for r in records)


def test_a_full_queue_drops_and_counts_and_close_counts_what_it_could_not_post(
    cancer: Served,
) -> None:
    sink = HttpPredictionSink(
        f"http://127.0.0.1:{free_port()}",
        "default",
        DEPLOYMENT,
        max_queue=100,
        flush_ms=600_000,
        retry_max_s=0.1,
    )
    registry = CollectorRegistry()
    sink.register_metrics(registry)
    for record in _copies(make_record(cancer, slice(0, 1), "x"), 150, "full"):
        sink.record(record)
    assert (sink.stats.pending, sink.stats.dropped) == (100, 50)

    stats = sink.close(timeout_s=0.5)

    assert (stats.delivered, stats.lost, stats.pending, stats.dropped) == (0, 100, 0, 50)
    sink.record(make_record(cancer, slice(0, 1), "late"))  # after close: dropped, no error
    text = generate_latest(registry).decode()
    assert (
        f'loopml_prediction_log_rows_total{{deployment="{DEPLOYMENT}",outcome="dropped"}} 51.0'
        in text
    )
    assert (
        f'loopml_prediction_log_rows_total{{deployment="{DEPLOYMENT}",outcome="lost"}} 100.0'
        in text
    )


def test_a_post_the_platform_refuses_is_counted_and_not_retried(
    cancer: Served, platform: Platform
) -> None:
    with Client(platform.url) as client:  # someone made the table with another schema
        client.tables.create("default", TABLE, columns=[{"name": "x", "type": "int64"}])
    sink = HttpPredictionSink(platform.url, "default", DEPLOYMENT, flush_ms=0)
    sink.record(make_record(cancer, slice(0, 4), "refused"))
    stats = sink.close(timeout_s=10)

    assert (stats.refused, stats.delivered, stats.retries) == (4, 0, 0)
    assert platform.counter.posts[RECORDS_PATH] == 1


def test_bad_arguments_are_refused_before_anything_starts() -> None:
    from loopml.core.errors import ValidationError

    with pytest.raises(ValidationError, match="invalid platform URL"):
        HttpPredictionSink("ftp://example.com", "default", DEPLOYMENT)
    with pytest.raises(ValidationError, match="invalid deployment name"):
        HttpPredictionSink("http://127.0.0.1:1", "default", "Bad_Name")
    with pytest.raises(ValidationError, match="role must be one of"):
        HttpPredictionSink("http://127.0.0.1:1", "default", DEPLOYMENT, role="boss")


# ---------------------------------------------------------------------- a real worker


def _worker(served: Served, port: int, platform: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "loopml.serve",
        "--package",
        str(served.package.path),
        "--manifest-sha256",
        served.package.manifest_sha256,
        "--name",
        MODEL,
        "--version",
        str(VERSION),
        "--deployment",
        DEPLOYMENT,
        "--port",
        str(port),
        "--log-url",
        platform,
        "--log-project",
        "default",
        "--log-role",
        "primary",
        # Nothing is posted on a timer: what lands, lands through the shutdown's flush.
        "--log-flush-ms",
        "60000",
    ]


def test_a_worker_sigtermed_after_n_requests_has_logged_all_n(
    cancer: Served, platform: Platform, tmp_path: Path
) -> None:
    port = free_port()
    stderr = tmp_path / "stderr"
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            _worker(cancer, port, platform.url), stdout=subprocess.DEVNULL, stderr=err, env=env
        )
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as http:
            _wait(lambda: _ready(process, http, stderr), "the model server to be ready", timeout=90)
            answers: dict[str, int] = {}
            for i in range(40):
                rows = 1 + i % 3
                response = http.post(
                    "/predict", json={"instances": cancer.records(slice(i, i + rows))}
                )
                assert response.status_code == 200, response.text
                answers[response.json()["inference_id"]] = rows
            metrics = http.get("/metrics").text
        pending = f'loopml_prediction_log_pending_rows{{deployment="{DEPLOYMENT}"}}'
        assert f"{pending} {float(sum(answers.values()))}" in metrics
        assert platform.counter.posts[RECORDS_PATH] == 0

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, stderr.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    logged = platform.sql(
        f"SELECT inference_id, count(*) AS n, max(role) AS role FROM {TABLE} GROUP BY 1"
    )
    assert {r["inference_id"]: r["n"] for r in logged} == answers
    assert {r["role"] for r in logged} == {"primary"}
    assert platform.counter.posts[RECORDS_PATH] == 1
    assert "could not be posted" not in stderr.read_text()


def _ready(process: subprocess.Popen[bytes], http: httpx.Client, stderr: Path) -> bool:
    if process.poll() is not None:
        pytest.fail(f"the worker exited ({process.returncode}):\n{stderr.read_text()}")
    try:
        return http.get("/v2/health/ready").status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--log-role", "boss"], "invalid choice: 'boss'"),
        (["--log-max-queue", "0"], "max_queue"),
        (["--log-url", "ftp://example.com"], "invalid platform URL"),
        (["--log-url", "http://127.0.0.1:1", "--log-project", "Bad Project"], "invalid project"),
    ],
)
def test_the_worker_refuses_bad_log_flags(cancer: Served, flags: list[str], message: str) -> None:
    command = _worker(cancer, free_port(), "http://127.0.0.1:1")
    command = command[: command.index("--log-url")] + flags
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}

    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
