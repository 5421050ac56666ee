"""The platform process's memory on its ``/metrics``:

| metric | labels |
|---|---|
| ``loopml_server_private_bytes`` | none: resident memory not backed by files, per scrape |
| ``loopml_server_heap_given_back_bytes_total`` | none: freed heap given back to the system |
| ``loopml_server_heap_trims_total`` | none: how many times it was |

The giving back is ``loopml.system.heap.HeapTrim``, from the housekeeping round; see
docs/operations.md, Memory."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loopml.system.heap import HeapTrim, private_bytes


class HeapCollector(Collector):
    """The server's private memory and what ``trim`` gave back, for a
    ``CollectorRegistry``."""

    def __init__(self, trim: HeapTrim) -> None:
        self._trim = trim

    def collect(self) -> Iterator[Metric]:
        private = private_bytes()
        if private is not None:  # no /proc: no sample rather than a wrong one
            yield GaugeMetricFamily(
                "loopml_server_private_bytes",
                "Resident memory of the platform process not backed by files.",
                value=float(private),
            )
        yield CounterMetricFamily(
            "loopml_server_heap_given_back_bytes",
            "Freed heap the platform process gave back to the system (malloc_trim).",
            value=float(self._trim.given_back),
        )
        yield CounterMetricFamily(
            "loopml_server_heap_trims",
            "Times the platform process gave freed heap back (server.heap_trim_step_bytes).",
            value=float(self._trim.trims),
        )
