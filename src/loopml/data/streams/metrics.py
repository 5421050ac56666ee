"""Stream consumers' figures on the platform's ``/metrics``, read from the streams' rows
(what each consumer last reported and what its commits recorded), so a consumer run by a
``loopml worker`` elsewhere shows as well as one run by this server:

| metric | type | what |
|---|---|---|
| ``loopml_stream_lag`` | gauge | messages in the broker not yet acked |
| ``loopml_stream_rate`` | gauge | messages committed per second, last interval |
| ``loopml_stream_messages_total`` | counter | messages committed (rows and dead letters) |
| ``loopml_stream_dead_letters_total`` | counter | messages sent to the dead-letter table |
| ``loopml_stream_commits_total`` | counter | commits made |
| ``loopml_stream_errors_total`` | counter | failed fetches or commits (0 at a consumer start) |
| ``loopml_stream_status`` | gauge | 1 for the stream's status, 0 for the others |
| ``loopml_stream_paused`` | gauge | 1 when paused |
| ``loopml_stream_heartbeat_timestamp_seconds`` | gauge | the consumer's last report |
| ``loopml_stream_last_commit_timestamp_seconds`` | gauge | the last commit |
| ``loopml_stream_last_error_timestamp_seconds`` | gauge | the consumer's last failure |
| ``loopml_stream_last_error_info`` | gauge | 1, with the failure's text as ``error`` |

Labels: ``project``, ``stream``, ``source`` (nats or redis), ``table``; ``status`` as well
on ``loopml_stream_status``. A consumer killed without a word keeps its last status: the
heartbeat's age tells (older than a few seconds: nobody consumes the stream). One query
per scrape, none more often than ``max_age_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loopml.core.streams import Stream
from loopml.store import MetadataStore
from loopml.store import streams as stream_rows

LABELS = ("project", "stream", "source", "table")
STATUSES = ("starting", "running", "paused", "failing", "stopped")
ERROR_LABEL_CHARS = 300


class StreamCollector(Collector):
    """The streams' gauges and counters, for a ``CollectorRegistry``.

    Args:
        store: the metadata database holding the streams.
        max_age_s: a scrape within this long of the last one answers from its reading.
    """

    def __init__(self, store: MetadataStore, max_age_s: float = 1.0) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._streams: list[Stream] = []

    def describe(self) -> Iterator[Metric]:
        # Registration asks for the names; answering without a query keeps startup quick.
        yield from self._families([])

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self._read())

    def _read(self) -> list[Stream]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._max_age_s:
                with self._store.session() as session:
                    self._streams = stream_rows.every(session)
                self._read_at = time.monotonic()
            return self._streams

    def _families(self, streams: list[Stream]) -> Iterator[Metric]:
        def gauge(name: str, text: str, labels: tuple[str, ...] = LABELS) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"loopml_stream_{name}", text, labels=labels)

        def counter(name: str, text: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"loopml_stream_{name}", text, labels=LABELS)

        lag = gauge("lag", "Messages in the broker not yet acked by the stream's consumer.")
        rate = gauge("rate", "Messages committed per second over the consumer's last interval.")
        messages = counter("messages", "Messages committed (rows and dead letters).")
        dead = counter("dead_letters", "Messages sent to the dead-letter table.")
        commits = counter("commits", "Commits made.")
        errors = counter("errors", "Failed fetches or commits since the consumer started.")
        status = gauge(
            "status", "1 for the stream's status, 0 for the others.", (*LABELS, "status")
        )
        paused = gauge("paused", "1 when the stream is paused.")
        heartbeat = gauge(
            "heartbeat_timestamp_seconds", "When the stream's consumer last reported."
        )
        committed = gauge("last_commit_timestamp_seconds", "When the stream last committed.")
        failed = gauge("last_error_timestamp_seconds", "When the stream's consumer last failed.")
        error = gauge(
            "last_error_info",
            "The consumer's last failure (what failed, why, the fix) as the error label.",
            (*LABELS, "error"),
        )
        for found in streams:
            labels = [found.project, found.name, found.config.source.type, found.config.table]
            stats = found.stats
            if stats.lag is not None:
                lag.add_metric(labels, float(stats.lag))
            if stats.rate is not None:
                rate.add_metric(labels, stats.rate)
            messages.add_metric(labels, float(stats.messages))
            dead.add_metric(labels, float(stats.dead_letters))
            commits.add_metric(labels, float(stats.commits))
            errors.add_metric(labels, float(stats.errors))
            for name in STATUSES:
                status.add_metric([*labels, name], 1.0 if stats.status == name else 0.0)
            paused.add_metric(labels, 1.0 if found.paused else 0.0)
            if stats.heartbeat_at is not None:
                heartbeat.add_metric(labels, stats.heartbeat_at.timestamp())
            if stats.last_commit_at is not None:
                committed.add_metric(labels, stats.last_commit_at.timestamp())
            if stats.last_error is not None:
                error.add_metric([*labels, stats.last_error[:ERROR_LABEL_CHARS]], 1.0)
                if stats.last_error_at is not None:
                    failed.add_metric(labels, stats.last_error_at.timestamp())
        yield from (lag, rate, messages, dead, commits, errors, status, paused)
        yield from (heartbeat, committed, failed, error)
