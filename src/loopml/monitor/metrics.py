"""The monitor's Prometheus gauges, read from what its last round computed (no database
query per scrape):

| metric | labels |
|---|---|
| ``loopml_monitor_drift_share`` | project, deployment, model, version |
| ``loopml_monitor_drift_score`` | project, deployment, model, version, column, method |
| ``loopml_monitor_accuracy`` | project, deployment, model, version |
| ``loopml_monitor_label_coverage`` | project, deployment, model, version |
| ``loopml_monitor_accuracy_seconds`` | project, deployment, model, version |
| ``loopml_monitor_alert_state`` | project, deployment, rule, severity (0 ok, 1 pending, 2 firing) |
| ``loopml_replica_cpu_percent`` | project, deployment, model, version, revision, replica |
| ``loopml_replica_rss_bytes`` | the same |
| ``loopml_replica_connections`` | the same |
| ``loopml_replica_restarts`` | the same (crashes followed by a restart on this server) |

Each version's figures are over a trailing stretch (``monitor.gauges``): drift over the
last hour, accuracy and coverage over the last hour or further back until it holds enough
labels (``loopml_monitor_accuracy_seconds`` says how far), so that a series stays while its
figure is known; the replicas' are the samples of the last round.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from loopml.monitor.engine import Monitor

_VERSION = ("project", "deployment", "model", "version")
_USAGE = ("cpu_percent", "rss_bytes")
STATE_VALUES = {"ok": 0.0, "pending": 1.0, "firing": 2.0}


class MonitorCollector(Collector):
    """Gauges of one monitor, for a ``CollectorRegistry``."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def collect(self) -> Iterator[Metric]:
        share = GaugeMetricFamily(
            "loopml_monitor_drift_share", "Share of input columns that drifted.", labels=_VERSION
        )
        score = GaugeMetricFamily(
            "loopml_monitor_drift_score",
            "A column's drift statistic (p-value for ks/chi2, distance otherwise).",
            labels=(*_VERSION, "column", "method"),
        )
        accuracy = GaugeMetricFamily(
            "loopml_monitor_accuracy", "Live accuracy from feedback labels.", labels=_VERSION
        )
        coverage = GaugeMetricFamily(
            "loopml_monitor_label_coverage", "Labelled rows / rows.", labels=_VERSION
        )
        alerts = GaugeMetricFamily(
            "loopml_monitor_alert_state",
            "Alert rule state: 0 ok, 1 pending, 2 firing.",
            labels=("project", "deployment", "rule", "severity"),
        )
        reach = GaugeMetricFamily(
            "loopml_monitor_accuracy_seconds",
            "How far back the accuracy and label coverage reach (s): the last hour, or "
            "further until it holds enough labels.",
            labels=_VERSION,
        )
        for (project, deployment), found in list(self._monitor.latest.items()):
            for gauge in found:
                labels = (project, deployment, gauge.model, str(gauge.version))
                drift = gauge.drift
                if drift.get("status") == "ready":
                    share.add_metric(labels, drift.get("share", 0.0))
                    for column in drift.get("columns", []):
                        if column["judged"]:
                            score.add_metric(
                                (*labels, column["column"], column["method"]), column["score"]
                            )
                quality = gauge.quality
                if quality.get("accuracy") is not None:
                    accuracy.add_metric(labels, quality["accuracy"])
                if quality:
                    coverage.add_metric(labels, quality.get("coverage", 0.0))
                    reach.add_metric(labels, gauge.quality_seconds)
        yield from self._replicas()
        for (project, deployment, rule, severity), state in list(
            self._monitor.alert_states.items()
        ):
            alerts.add_metric((project, deployment, rule, severity), STATE_VALUES.get(state, 0.0))
        yield from (share, score, accuracy, coverage, reach, alerts)

    def _replicas(self) -> Iterator[Metric]:
        labels = (*_VERSION, "revision", "replica")
        families = {
            "cpu_percent": GaugeMetricFamily(
                "loopml_replica_cpu_percent",
                "CPU of a replica's processes since the previous round, % of one core.",
                labels=labels,
            ),
            "rss_bytes": GaugeMetricFamily(
                "loopml_replica_rss_bytes",
                "Resident memory of a replica's processes.",
                labels=labels,
            ),
            "connections": GaugeMetricFamily(
                "loopml_replica_connections",
                "Established TCP connections of a replica.",
                labels=labels,
            ),
            "restarts": GaugeMetricFamily(
                "loopml_replica_restarts",
                "Crashes of a replica followed by a restart.",
                labels=labels,
            ),
        }
        for sample in list(self._monitor.replicas):
            values = (
                sample.project,
                sample.deployment,
                sample.model,
                str(sample.version),
                str(sample.revision),
                str(sample.replica),
            )
            for field, family in families.items():
                if field in _USAGE and not sample.measured:
                    continue  # unknown (no metrics API on Kubernetes), not 0
                family.add_metric(values, float(getattr(sample, field)))
        yield from families.values()
