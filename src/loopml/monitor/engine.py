"""The monitor loop: every ``interval_s``, for every deployment, read what arrived in its
prediction log and feedback since the watermark, add it to its windows, then evaluate drift
episodes and alert rules. It emits events (``drift.detected``, ``drift.resolved``,
``alert.firing``, ``alert.resolved``, ``quality.degraded``) and never starts runs: the
trigger engine reacts to them.

One transaction per deployment and tick moves the windows and the watermark together, so a
crash between ticks neither loses nor double-counts rows. One monitor per database: two
servers running it on the same database would each count every row (a lease is not done).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loopml.core.clock import as_utc, utcnow
from loopml.core.deployments import Deployment
from loopml.monitor import reader
from loopml.monitor.drift import DriftConfig
from loopml.monitor.episodes import evaluate_deployment
from loopml.monitor.quality import quality_of
from loopml.monitor.reference import Reference, ensure_reference
from loopml.monitor.windows import (
    Piece,
    empty_state,
    merge_state,
    parse_sizes,
    piece_state,
    split_pieces,
    summarize,
    window_end,
)
from loopml.settings import MonitorSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, deployments, events
from loopml.store import monitor as rows

log = logging.getLogger("loopml.monitor")
ACTOR = "monitor"
ErrorSource = Callable[[], dict[tuple[str, str, str, str, str], float]]
"""Cumulative failed requests by (project, deployment, model, version, status)."""
WATERMARK = "watermark"


@dataclass
class TickReport:
    """What one round did."""

    deployments: int = 0
    rows: int = 0
    labels: int = 0
    windows: int = 0
    events: list[str] = field(default_factory=list)


def drift_config(settings: MonitorSettings) -> DriftConfig:
    """The drift thresholds in force."""
    return DriftConfig(
        small_reference=settings.small_reference,
        p_value=settings.drift_p_value,
        distance=settings.drift_distance,
        drift_share=settings.drift_share,
    )


class Monitor:
    """Computes windows for every deployment of one database.

    Args:
        store, artifacts: the platform's backends.
        settings: the ``monitor`` settings.
        clock: the current time (tests hand in their own).
        errors: where failed requests are counted (the gateway's metrics), if anywhere.
    """

    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        settings: MonitorSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        errors: ErrorSource | None = None,
    ) -> None:
        self.store, self.artifacts, self.settings = store, artifacts, settings
        self.clock = clock
        self.sizes = parse_sizes(settings.windows)
        self.smallest = min(self.sizes.values())
        self.config = drift_config(settings)
        self._errors = errors
        self._seen_errors: dict[tuple[str, str, str, str, str], float] | None = None
        self._references: dict[tuple[str, str, int], Reference] = {}
        self._event_cursor: int | None = None
        self._pruned: datetime | None = None
        self._stop = threading.Event()
        self.latest: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """The newest windows of the smallest size per (project, deployment), for /metrics."""
        self.alert_states: dict[tuple[str, str, str, str], str] = {}
        """Each rule's state after the last round, by (project, deployment, rule, severity)."""

    # ------------------------------------------------------------------ one round

    def tick(self) -> TickReport:
        """One round over every deployment."""
        report = TickReport()
        now = as_utc(self.clock())
        self._build_references()
        errors = self._error_deltas()
        with self.store.session() as session:
            found = deployments.list_all(session)
        for deployment in found:
            try:
                self._deployment(deployment, now, errors, report)
            except Exception:
                log.exception(
                    "monitoring %s/%s failed; retrying next round",
                    deployment.project,
                    deployment.name,
                )
        if self._pruned is None or now - self._pruned >= timedelta(hours=1):
            with self.store.session() as session:
                cutoff = now - timedelta(days=self.settings.retention_days)
                rows.drop_windows_before(session, cutoff)
            self._pruned = now
        return report

    def reference(self, project: str, model: str, version: int) -> Reference:
        """A version's reference, built on first use (cached for this monitor)."""
        key = (project, model, version)
        if key not in self._references:
            self._references[key] = ensure_reference(
                self.store, self.artifacts, project, model, version
            )
        return self._references[key]

    def _build_references(self) -> None:
        """Build the reference of each version that became ready since the last round
        (versions registered while no monitor ran get theirs when first seen serving)."""
        with self.store.session() as session:
            if self._event_cursor is None:
                self._event_cursor = deployments.latest_event_id(session)
            page = events.list_(
                session, type="model.version.ready", cursor=str(self._event_cursor), limit=100
            )
        for event in page.items:
            self._event_cursor = event.id
            try:
                project, model = event.project or "", str(event.payload["model"])
                self.reference(project, model, int(event.payload["version"]))
            except Exception:
                log.exception("building the reference of %s failed", event.subject)

    def _error_deltas(self) -> dict[tuple[str, str, str, str, str], float]:
        if self._errors is None:
            return {}
        try:
            current = self._errors()
        except Exception:
            log.exception("could not read the gateway's error counts")
            return {}
        seen, self._seen_errors = self._seen_errors, current
        if seen is None:
            return {}
        return {k: v - seen.get(k, 0.0) for k, v in current.items() if v > seen.get(k, 0.0)}

    # ------------------------------------------------------------------ one deployment

    def _deployment(
        self,
        deployment: Deployment,
        now: datetime,
        errors: dict[tuple[str, str, str, str, str], float],
        report: TickReport,
    ) -> None:
        project, name = deployment.project, deployment.name
        with self.store.session() as session:
            mark = rows.get_cursor(session, project, name, WATERMARK)
        until = now - timedelta(seconds=self.settings.lag_s)
        first = until - timedelta(seconds=self.settings.backfill_s)
        since_p = _moment(mark.get("predictions")) or first
        since_f = _moment(mark.get("feedback")) or since_p
        pieces: dict[Piece, dict[str, Any]] = {}
        for table in reader.predictions_between(
            self.store, self.artifacts, project, name, since_p, until
        ):
            report.rows += table.num_rows
            for (model, version, start), part in split_pieces(table, self.smallest).items():
                state = piece_state(part, self.reference(project, model, version))
                key = (model, version, start)
                pieces[key] = merge_state(pieces[key], state) if key in pieces else state
        horizon = until - timedelta(seconds=self.settings.label_horizon_s)
        for joined in reader.labelled_between(
            self.store, self.artifacts, project, name, since_f, until, horizon
        ):
            report.labels += joined.num_rows
            for (model, version, start), part in split_pieces(joined, self.smallest).items():
                state = empty_state()
                state["quality"] = quality_of(part)
                key = (model, version, start)
                pieces[key] = merge_state(pieces[key], state) if key in pieces else state
        self._add_errors(pieces, project, name, now, errors)
        report.windows += self._save(project, name, pieces, now, until)
        report.deployments += 1
        report.events += evaluate_deployment(self, project, name, now)

    def _add_errors(
        self,
        pieces: dict[Piece, dict[str, Any]],
        project: str,
        name: str,
        now: datetime,
        errors: dict[tuple[str, str, str, str, str], float],
    ) -> None:
        start = int(now.timestamp()) // self.smallest * self.smallest
        for (p, d, model, version, status), count in errors.items():
            if (p, d) != (project, name):
                continue
            state = empty_state()
            state["usage"]["errors"] = {status: int(count)}
            key = (model, int(version) if version.isdigit() else 0, start)
            pieces[key] = merge_state(pieces[key], state) if key in pieces else state

    def _save(
        self,
        project: str,
        name: str,
        pieces: dict[Piece, dict[str, Any]],
        now: datetime,
        until: datetime,
    ) -> int:
        windows: dict[rows.WindowKey, dict[str, Any]] = {}
        for (model, version, start), state in pieces.items():
            for size, seconds in self.sizes.items():
                begin = datetime.fromtimestamp(start - start % seconds, tz=now.tzinfo)
                key = (name, model, version, size, begin)
                windows[key] = merge_state(windows[key], state) if key in windows else state
        # References first: building one writes it, which must not happen inside the
        # transaction below (SQLite allows one writer; the nested one would wait on it).
        references = {
            (model, version): self.reference(project, model, version) if model else None
            for _, model, version, _, _ in windows
        }
        with self.store.session() as session:
            stored = rows.get_windows(session, project, list(windows))
            for key, state in windows.items():
                old = stored.get(key)
                merged = merge_state(old["state"], state) if old else state
                seconds = self.sizes[key[3]]
                elapsed = min(seconds, max((until - key[4]).total_seconds(), 1.0))
                reference = references[(key[1], key[2])]
                summary = summarize(merged, reference, elapsed, self.config)
                rows.put_window(
                    session,
                    project,
                    key,
                    {
                        "end": window_end(key[4], seconds),
                        "rows": merged["usage"]["rows"],
                        "labels": merged["quality"]["labels"],
                        "state": merged,
                        "summary": summary,
                    },
                )
            rows.set_cursor(
                session,
                project,
                name,
                WATERMARK,
                {"predictions": until.isoformat(), "feedback": until.isoformat()},
            )
        return len(windows)

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """Tick every ``interval_s`` until ``stop``."""
        log.info(
            "monitor started (every %g s, windows %s)", self.settings.interval_s, list(self.sizes)
        )
        # The first round waits one interval: a server that starts and stops at once (tests,
        # `loopml up` failing its port check) never writes anything.
        while not self._stop.wait(self.settings.interval_s):
            try:
                self.tick()
            except Exception:
                log.exception("monitor round failed; retrying next round")

    def stop(self) -> None:
        """End ``run`` after its current round."""
        self._stop.set()


def _moment(text: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(text)) if text else None


class MonitorThread:
    """A monitor running in a background thread of this process (the API server)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._thread = threading.Thread(target=monitor.run, name="monitor", daemon=True)

    def start(self) -> MonitorThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the monitor and wait for its round to end."""
        self.monitor.stop()
        self._thread.join(timeout_s)
