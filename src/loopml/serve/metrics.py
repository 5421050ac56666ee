"""The model server's Prometheus metrics, in the text exposition format (version 0.0.4).

Written here rather than with ``prometheus-client``, which loopml does not depend on yet:
a server process has one fixed label set (deployment, model, version) plus a route and a
status, so a counter is a dict and a histogram a list of bucket counts, updated on the event
loop's thread without locks. Swapping in ``prometheus-client`` later touches this module
only; the metric names below are the contract.

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

import bisect
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Counter:
    def __init__(self, name: str, help_text: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def render(self, base: str) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for labels, value in sorted(self.values.items()):
            text = _join(base, _labels(zip(self.label_names, labels, strict=True)))
            lines.append(f"{self.name}{{{text}}} {_number(value)}")
        return lines


class _Histogram:
    def __init__(
        self, name: str, help_text: str, label_names: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self.buckets = tuple(buckets)
        # per label set: [count per bucket (non-cumulative, last one is +Inf), sum]
        self.values: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        slot = self.values.get(labels)
        if slot is None:
            slot = self.values[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        slot[0][bisect.bisect_left(self.buckets, value)] += 1
        slot[1][0] += value

    def render(self, base: str) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, (counts, total) in sorted(self.values.items()):
            prefix = _join(base, _labels(zip(self.label_names, labels, strict=True)))
            running = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else _number(bound)
                bucket = _join(prefix, _labels([("le", le)]))
                lines.append(f"{self.name}_bucket{{{bucket}}} {running}")
            lines.append(f"{self.name}_sum{{{prefix}}} {_number(total[0])}")
            lines.append(f"{self.name}_count{{{prefix}}} {running}")
        return lines


def _join(*parts: str) -> str:
    return ",".join(p for p in parts if p)


class ServerMetrics:
    """The metrics of one model-server process, all labelled with its deployment, model
    and version. Update methods are called from the event loop's thread only.
    """

    def __init__(self, *, deployment: str, model: str, version: int, format: str) -> None:
        self._base = _labels(
            [("deployment", deployment), ("model", model), ("version", str(version))]
        )
        self._format = format
        self.requests = _Counter(
            "loopml_model_requests_total",
            "Requests answered, by route and HTTP status.",
            ("route", "status"),
        )
        self.errors = _Counter(
            "loopml_model_errors_total",
            "Requests answered with an error, by route and error code.",
            ("route", "code"),
        )
        self.latency = _Histogram(
            "loopml_model_request_duration_seconds",
            "Time from receiving a request to its answer, by route.",
            ("route",),
            LATENCY_BUCKETS,
        )
        self.batch_size = _Histogram(
            "loopml_model_batch_size", "Requests per model call.", (), BATCH_SIZE_BUCKETS
        )
        self.batch_rows = _Histogram(
            "loopml_model_batch_rows", "Rows per model call.", (), ROWS_BUCKETS
        )
        self.inference = _Histogram(
            "loopml_model_inference_duration_seconds",
            "Time of one model call, thread hand-off included.",
            (),
            LATENCY_BUCKETS,
        )
        self.rows = _Counter("loopml_model_rows_total", "Rows scored.", ())
        self.sink_errors = _Counter(
            "loopml_model_sink_errors_total", "Prediction-sink calls that raised.", ()
        )
        self._inflight: Callable[[], int] = lambda: 0

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
        lines: list[str] = []
        for metric in (self.requests, self.errors, self.latency):
            lines += metric.render(self._base)
        for metric in (self.batch_size, self.batch_rows, self.inference):
            lines += metric.render(self._base)
        for metric in (self.rows, self.sink_errors):
            if not metric.values:
                metric.values[()] = 0.0
            lines += metric.render(self._base)
        lines += [
            "# HELP loopml_model_inflight_requests Requests waiting for or in a model call.",
            "# TYPE loopml_model_inflight_requests gauge",
            f"loopml_model_inflight_requests{{{self._base}}} {self._inflight()}",
            "# HELP loopml_model_info The model this process serves; always 1.",
            "# TYPE loopml_model_info gauge",
            f"loopml_model_info{{{_join(self._base, _labels([('format', self._format)]))}}} 1",
        ]
        return "\n".join(lines) + "\n"
