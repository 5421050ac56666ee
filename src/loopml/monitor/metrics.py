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

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loopml.monitor.gauges import Gauge

if TYPE_CHECKING:
    from loopml.monitor.engine import Monitor

log = logging.getLogger("loopml.monitor")
Latest = dict[tuple[str, str], list[Gauge]]
AlertStates = dict[tuple[str, str, str, str], str]

_VERSION = ("project", "deployment", "model", "version")
_USAGE = ("cpu_percent", "rss_bytes")
STATE_VALUES = {"ok": 0.0, "pending": 1.0, "firing": 2.0}


class FigureFile:
    """What the monitor process's last round computed for ``/metrics`` (each version's
    gauges, each rule's state), in a file the API server reads when it changed: the
    process writes it after every round, whole (a new file moved over the old one)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._figures: tuple[Latest, AlertStates] = ({}, {})

    def write(self, monitor: Monitor) -> None:
        """Keep ``monitor``'s figures of its last round."""
        data = {
            "latest": [
                [project, name, [dataclasses.asdict(gauge) for gauge in found]]
                for (project, name), found in list(monitor.latest.items())
            ],
            "alerts": [[*key, state] for key, state in list(monitor.alert_states.items())],
        }
        fresh = self.path.with_name(self.path.name + ".new")
        fresh.write_text(json.dumps(data), encoding="utf-8")
        os.replace(fresh, self.path)

    def read(self) -> tuple[Latest, AlertStates]:
        """The figures last written (none before the first round); a file that cannot be
        read is logged once and leaves the figures read before."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return self._figures
        seen = (stat.st_ino, stat.st_mtime_ns)  # each write is a new file: a new inode
        if seen == self._seen:
            return self._figures
        self._seen = seen
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            latest = {
                (project, name): [Gauge(**gauge) for gauge in found]
                for project, name, found in data["latest"]
            }
            alerts = {(e[0], e[1], e[2], e[3]): e[4] for e in data["alerts"]}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            log.exception("could not read the monitor process's figures in %s", self.path)
        else:
            self._figures = (latest, alerts)
        return self._figures


class MonitorCollector(Collector):
    """Gauges of one monitor, for a ``CollectorRegistry``: its replica samples, and its
    versions' figures and rule states, or those ``figures`` holds (a monitor process's)."""

    def __init__(self, monitor: Monitor, figures: FigureFile | None = None) -> None:
        self._monitor = monitor
        self._file = figures

    def _figures(self) -> tuple[Latest, AlertStates]:
        if self._file is not None:
            return self._file.read()
        return self._monitor.latest, self._monitor.alert_states

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
        latest, alert_states = self._figures()
        for (project, deployment), found in list(latest.items()):
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
        for (project, deployment, rule, severity), state in list(alert_states.items()):
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
