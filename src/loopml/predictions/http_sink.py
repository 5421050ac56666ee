"""``HttpPredictionSink``: a replica's predictions, posted in batches to the platform's
record ingest, never on the hot path.

A model-server replica is a process of its own (locally, or a pod), so its prediction log
goes through the platform's HTTP record ingest: ``POST /api/v1/projects/{p}/tables/
<deployment>__predictions/records`` (NDJSON), into the table's fixed schema
(``loopml.core.predictions.PREDICTION_COLUMNS``; the sink creates the table with it first).

- ``record`` (on the server's event loop) only appends the record to an in-memory queue,
  bounded in rows (``max_queue``): past it, records are dropped and counted, never waited
  for.
- A background thread turns queued records into rows and posts them, ``max_batch`` rows
  (and at most ``max_post_bytes``) a post, as soon as that many wait or ``flush_ms`` after
  the first of them arrived. Each post carries an ``Idempotency-Key`` of its own, kept
  across its retries, so a retried post lands once.
- Unreachable platform, 5xx, 409 and 429 are retried with backoff (up to ``retry_max_s``
  between tries) for as long as it takes; meanwhile the queue fills, then drops. A post the
  platform refuses (a 4xx: the table's schema was changed by hand, the project is gone) is
  dropped, counted and logged.
- ``close`` (the worker calls it after its graceful shutdown, SIGTERM) posts everything
  still queued, retrying until ``timeout_s``; what is left then is counted as lost.

Counts are exposed for the server's ``/metrics`` (``register_metrics``):
``loopml_prediction_log_rows_total{outcome}`` (delivered, dropped, refused, lost),
``loopml_prediction_log_posts_total``, ``loopml_prediction_log_retries_total`` and
``loopml_prediction_log_pending_rows``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from loopml.core.deployments import prediction_table
from loopml.core.errors import ValidationError
from loopml.core.names import validate_project_name
from loopml.core.predictions import PREDICTION_COLUMNS, ROLES
from loopml.predictions import _rows as _predrows
from loopml.predictions.intake import PredictionRecord

log = logging.getLogger("loopml.predictions.log")

_RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class SinkStats:
    """What a sink has done so far, in rows (posts and retries in posts).

    Attributes:
        delivered: rows the platform committed.
        dropped: rows not queued because the queue was full (or the sink closed).
        refused: rows in posts the platform refused (4xx); they are not retried.
        lost: rows still unsent when ``close`` gave up.
        pending: rows queued or being posted now.
        posts: posts that landed.
        retries: posts sent again after a failure.
    """

    delivered: int
    dropped: int
    refused: int
    lost: int
    pending: int
    posts: int
    retries: int


class HttpPredictionSink:
    """Posts a replica's predictions to the platform's record ingest; see the module.

    Args:
        platform_url: the platform's base URL (``http://127.0.0.1:8765``).
        project: the deployment's project.
        deployment: the deployment; its log is ``prediction_table(deployment)``.
        role: ``primary``, ``canary`` or ``shadow``, written in every row; ``None`` when
            unknown.
        max_batch: most rows per post.
        flush_ms: longest a queued row waits for others before it is posted.
        max_queue: most rows queued; more are dropped and counted.
        max_post_bytes: most bytes per post (keep under the platform's
            ``server.max_body_bytes``).
        timeout_s: each HTTP call's timeout.
        retry_max_s: the longest wait between two tries of a post.
        transport: an httpx transport to use (tests); the network by default.
    """

    def __init__(
        self,
        platform_url: str,
        project: str,
        deployment: str,
        *,
        role: str | None = None,
        max_batch: int = 1000,
        flush_ms: float = 200.0,
        max_queue: int = 100_000,
        max_post_bytes: int = 4 * 1024 * 1024,
        timeout_s: float = 10.0,
        retry_max_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        validate_project_name(project)
        table = prediction_table(deployment)
        _check_url(platform_url)
        if role is not None and role not in ROLES:
            raise ValidationError(f"role must be one of {list(ROLES)}, got {role!r}")
        if max_batch < 1 or max_queue < 1 or flush_ms < 0 or max_post_bytes < 1024:
            raise ValidationError(
                "max_batch, max_queue >= 1; flush_ms >= 0; max_post_bytes >= 1024"
            )
        self.project, self.deployment, self.role, self.table = project, deployment, role, table
        self._max_batch, self._max_queue, self._max_bytes = max_batch, max_queue, max_post_bytes
        self._flush_s, self._retry_max_s = flush_ms / 1000.0, retry_max_s
        base = f"/api/v1/projects/{project}/tables"
        self._tables_path, self._records_path = base, f"{base}/{table}/records"
        self._http = httpx.Client(
            base_url=platform_url.rstrip("/"),
            timeout=timeout_s,
            transport=transport,
            trust_env=False,
        )
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[PredictionRecord] = deque()
        self._queued_rows = 0
        self._first_at = 0.0
        self._sending = 0
        self._closing = False
        self._deadline = float("inf")
        self._table_ready = False
        self._delivered = self._dropped = self._refused = self._lost = 0
        self._posts = self._retries = 0
        self._thread = threading.Thread(
            target=self._run, name=f"loopml-prediction-log-{deployment}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ hot path

    def record(self, record: PredictionRecord) -> None:
        """Queue ``record`` and return (no I/O); drop and count it when the queue is full."""
        rows = record.rows
        with self._lock:
            if self._closing or self._queued_rows + rows > self._max_queue:
                self._dropped += rows
                return
            if not self._queue:
                self._first_at = time.monotonic()
                self._wake.notify()
            self._queue.append(record)
            before = self._queued_rows
            self._queued_rows += rows
            if before < self._max_batch <= self._queued_rows:
                self._wake.notify()

    # ------------------------------------------------------------------ lifecycle

    @property
    def stats(self) -> SinkStats:
        """The counts so far."""
        with self._lock:
            return SinkStats(
                delivered=self._delivered,
                dropped=self._dropped,
                refused=self._refused,
                lost=self._lost,
                pending=self._queued_rows + self._sending,
                posts=self._posts,
                retries=self._retries,
            )

    def close(self, timeout_s: float = 30.0) -> SinkStats:
        """Post everything queued (retrying until ``timeout_s``), stop, and return the counts.

        Records arriving from now on are dropped (and counted).
        """
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout_s
            self._wake.notify()
        self._thread.join(timeout_s + 5.0)
        self._http.close()
        stats = self.stats
        unsent = stats.lost + stats.pending
        if unsent:
            log.warning(
                "prediction log of %s: %d rows could not be posted before shutdown",
                self.deployment,
                unsent,
            )
        return stats

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Expose the counts as Prometheus metrics in ``registry`` (the server's)."""
        registry.register(_SinkCollector(self))

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            rows = [row for record in taken for row in _predrows.record_rows(record, self.role)]
            for part in self._posts_of(rows):
                self._deliver(part)

    def _take(self) -> list[PredictionRecord] | None:
        """The next records to post: wait for a batch, its time, or the close."""
        with self._lock:
            while True:
                if self._queue and (
                    self._closing
                    or self._queued_rows >= self._max_batch
                    or time.monotonic() >= self._first_at + self._flush_s
                ):
                    break
                if self._closing:
                    return None
                timeout = self._first_at + self._flush_s - time.monotonic() if self._queue else None
                self._wake.wait(timeout)
            taken: list[PredictionRecord] = []
            rows = 0
            while self._queue and (not taken or rows + self._queue[0].rows <= self._max_batch):
                record = self._queue.popleft()
                taken.append(record)
                rows += record.rows
            self._queued_rows -= rows
            self._sending += rows
            self._first_at = time.monotonic()
            return taken

    def _posts_of(self, rows: list[_predrows.Row]) -> Iterator[tuple[bytes, int]]:
        """NDJSON bodies of at most ``max_batch`` rows and about ``max_post_bytes``."""
        lines: list[bytes] = []
        size = 0
        for row in rows:
            line = _predrows.to_ndjson([row])
            if lines and (len(lines) >= self._max_batch or size + len(line) > self._max_bytes):
                yield b"\n".join(lines), len(lines)
                lines, size = [], 0
            lines.append(line)
            size += len(line) + 1
        if lines:
            yield b"\n".join(lines), len(lines)

    def _deliver(self, post: tuple[bytes, int]) -> None:
        body, rows = post
        headers = {"Content-Type": _NDJSON, "Idempotency-Key": uuid.uuid4().hex}
        delay = 0.05
        tries = 0
        while True:
            status, message = self._try_post(body, headers)
            landed = status is not None and 200 <= status < 300
            refused = status is not None and not landed and status not in _RETRYABLE
            left = self._deadline - time.monotonic()
            if landed or refused or left <= 0:
                self._settle(rows, "delivered" if landed else "refused" if refused else "lost")
                if refused:
                    log.warning(
                        "prediction log of %s: the platform refused %d rows (%s): %s",
                        self.deployment,
                        rows,
                        status,
                        message,
                    )
                return
            tries += 1
            with self._lock:
                self._retries += 1
            if tries in (1, 10) or tries % 100 == 0:
                log.warning(
                    "prediction log of %s: cannot post to the platform (%s); retrying",
                    self.deployment,
                    message,
                )
            time.sleep(min(delay * random.uniform(1.0, 1.5), left))  # noqa: S311 (jitter)
            delay = min(delay * 2, self._retry_max_s)

    def _settle(self, rows: int, outcome: str) -> None:
        with self._lock:
            self._sending -= rows
            if outcome == "delivered":
                self._delivered += rows
                self._posts += 1
            elif outcome == "refused":
                self._refused += rows
            else:
                self._lost += rows

    def _try_post(self, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        """``(status, message)`` of one try (``None``: no answer); creates the table first."""
        try:
            if not self._table_ready:
                status, message = self._create_table()
                if status is not None and not (200 <= status < 300 or status == 409):
                    return status, message
                if status is None:
                    return None, message
                self._table_ready = True
            response = self._http.post(self._records_path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, _message(response)

    def _create_table(self) -> tuple[int | None, str]:
        columns = [c.model_dump() for c in PREDICTION_COLUMNS]
        body = {
            "name": self.table,
            "description": f"Predictions served by deployment {self.deployment}.",
            "columns": columns,
        }
        try:
            response = self._http.post(self._tables_path, json=body)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, _message(response)


def _message(response: httpx.Response) -> str:
    if response.is_success:
        return "ok"
    try:
        error: Any = response.json().get("error", {})
        return f"{error.get('code')}: {str(error.get('message'))[:300]}"
    except (ValueError, AttributeError):
        return response.text[:300]


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            f"invalid platform URL {url[:200]!r}: expected http(s)://host[:port], such as "
            "http://127.0.0.1:8765",
            details={"field": "log_url"},
        )


class _SinkCollector(Collector):
    def __init__(self, sink: HttpPredictionSink) -> None:
        self._sink = sink

    def collect(self) -> Iterator[Metric]:
        stats = self._sink.stats
        deployment = self._sink.deployment
        rows = CounterMetricFamily(
            "loopml_prediction_log_rows",
            "Prediction-log rows, by outcome: delivered to the platform, dropped (queue "
            "full), refused by the platform, or lost at shutdown.",
            labels=["deployment", "outcome"],
        )
        for outcome in ("delivered", "dropped", "refused", "lost"):
            rows.add_metric([deployment, outcome], getattr(stats, outcome))
        yield rows
        posts = CounterMetricFamily(
            "loopml_prediction_log_posts", "Posts that landed.", labels=["deployment"]
        )
        posts.add_metric([deployment], stats.posts)
        yield posts
        retries = CounterMetricFamily(
            "loopml_prediction_log_retries", "Posts sent again.", labels=["deployment"]
        )
        retries.add_metric([deployment], stats.retries)
        yield retries
        pending = GaugeMetricFamily(
            "loopml_prediction_log_pending_rows",
            "Rows queued or being posted.",
            labels=["deployment"],
        )
        pending.add_metric([deployment], stats.pending)
        yield pending
