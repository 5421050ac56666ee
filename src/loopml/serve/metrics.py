"""The model server's Prometheus metrics, through ``prometheus-client``.

Each server app has its own ``CollectorRegistry`` (several apps may live in one test
process), and every series carries the process's deployment, model and version.

| metric | type | labels (besides deployment, model, version) |
|---|---|---|
| ``loopml_model_requests_total`` | counter | ``route``, ``status`` |
| ``loopml_model_errors_total`` | counter | ``route``, ``code`` (the error code) |
| ``loopml_model_request_duration_seconds`` | histogram | ``route`` |
| ``loopml_model_batch_size`` | histogram | (requests per model call) |
| ``loopml_model_batch_rows`` | histogram | (rows per model call) |
| ``loopml_model_inference_duration_seconds`` | histogram | (one model call) |
| ``loopml_model_rows_total`` | counter | (rows scored) |
| ``loopml_model_sink_errors_total`` | counter | (prediction-sink calls that raised) |
| ``loopml_model_inflight_requests`` | gauge | (waiting for or in a model call) |
| ``loopml_model_info`` | gauge, 1 | ``format`` (onnx or skops) |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# ``*_created`` series double the output and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
ROWS_BUCKETS = (1, 10, 100, 1000, 10_000, 100_000)
BASE_LABELS = ("deployment", "model", "version")


class _Counter:
    """A counter whose base labels are fixed; ``inc`` takes the remaining label values.

    Labelled children are looked up once per label set and kept (here and in
    ``_Histogram``): ``labels()`` takes a lock and builds a key on every call, and these are
    updated on every request."""

    def __init__(
        self,
        registry: CollectorRegistry,
        base: tuple[str, str, str],
        name: str,
        help_text: str,
        label_names: Sequence[str],
    ) -> None:
        self._base = base
        self._metric = Counter(
            name.removesuffix("_total"),
            help_text,
            (*BASE_LABELS, *label_names),
            registry=registry,
        )
        self._children: dict[tuple[str, ...], Any] = {}
        if not label_names:
            self._metric.labels(*base)

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*self._base, *labels)
        child.inc(amount)


class _Histogram:
    """A histogram whose base labels are fixed; ``observe`` takes the remaining values."""

    def __init__(
        self,
        registry: CollectorRegistry,
        base: tuple[str, str, str],
        name: str,
        help_text: str,
        label_names: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        self._base = base
        self._metric = Histogram(
            name,
            help_text,
            (*BASE_LABELS, *label_names),
            buckets=tuple(buckets),
            registry=registry,
        )

        self._children: dict[tuple[str, ...], Any] = {}

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*self._base, *labels)
        child.observe(value)


class ServerMetrics:
    """The metrics of one model-server process, all labelled with its deployment, model
    and version. Update methods are called from the event loop's thread only.
    """

    def __init__(self, *, deployment: str, model: str, version: int, format: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        base = (deployment, model, str(version))
        reg = self.registry
        self.requests = _Counter(
            reg,
            base,
            "loopml_model_requests_total",
            "Requests answered, by route and HTTP status.",
            ("route", "status"),
        )
        self.errors = _Counter(
            reg,
            base,
            "loopml_model_errors_total",
            "Requests answered with an error, by route and error code.",
            ("route", "code"),
        )
        self.latency = _Histogram(
            reg,
            base,
            "loopml_model_request_duration_seconds",
            "Time from receiving a request to its answer, by route.",
            ("route",),
            LATENCY_BUCKETS,
        )
        self.batch_size = _Histogram(
            reg,
            base,
            "loopml_model_batch_size",
            "Requests per model call.",
            (),
            BATCH_SIZE_BUCKETS,
        )
        self.batch_rows = _Histogram(
            reg, base, "loopml_model_batch_rows", "Rows per model call.", (), ROWS_BUCKETS
        )
        self.inference = _Histogram(
            reg,
            base,
            "loopml_model_inference_duration_seconds",
            "Time of one model call, thread hand-off included.",
            (),
            LATENCY_BUCKETS,
        )
        self.rows = _Counter(reg, base, "loopml_model_rows_total", "Rows scored.", ())
        self.sink_errors = _Counter(
            reg, base, "loopml_model_sink_errors_total", "Prediction-sink calls that raised.", ()
        )
        self._inflight: Callable[[], int] = lambda: 0
        inflight = Gauge(
            "loopml_model_inflight_requests",
            "Requests waiting for or in a model call.",
            BASE_LABELS,
            registry=reg,
        )
        inflight.labels(*base).set_function(lambda: float(self._inflight()))
        info = Gauge(
            "loopml_model_info",
            "The model this process serves; always 1.",
            (*BASE_LABELS, "format"),
            registry=reg,
        )
        info.labels(*base, format).set(1)

    def track_inflight(self, read: Callable[[], int]) -> None:
        """Read the in-flight request count from ``read`` at each scrape."""
        self._inflight = read

    def observe_request(self, route: str, status: int, seconds: float, code: str | None) -> None:
        """One answered request; ``code`` is its error code when it failed."""
        self.requests.inc((route, str(status)))
        self.latency.observe(seconds, (route,))
        if code is not None:
            self.errors.inc((route, code))

    def observe_batch(self, requests: int, rows: int, seconds: float) -> None:
        """One model call of ``requests`` requests and ``rows`` rows."""
        self.batch_size.observe(requests)
        self.batch_rows.observe(rows)
        self.inference.observe(seconds)
        self.rows.inc((), rows)

    def render(self) -> str:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry).decode("utf-8")
