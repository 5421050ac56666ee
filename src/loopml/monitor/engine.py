"""The monitor loop: every ``interval_s``, for every deployment, read what arrived in its
prediction log and feedback since the watermark, add it to its windows, then evaluate drift
episodes and alert rules. It emits events (``drift.detected``, ``drift.resolved``,
``alert.firing``, ``alert.resolved``, ``quality.degraded``) and never starts runs: the
trigger engine reacts to them.

One transaction per deployment and tick moves the windows and the watermark together, so a
crash between ticks neither loses nor double-counts rows. One monitor per database: a round
runs only while this monitor holds the database's lease (``loopml.monitor.lease``), and
each of those transactions checks that it still does. A monitor without the lease still
counts its own gateway and replicas each round and leaves them for the holder
(``loopml.monitor.shares``).
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
from loopml.core.resources import ReplicaSample
from loopml.monitor.drift import DriftConfig
from loopml.monitor.episodes import evaluate_deployment
from loopml.monitor.gauges import Gauge
from loopml.monitor.lease import Lease, LeaseLost, lease_seconds
from loopml.monitor.quality import quality_of, scaled_quality
from loopml.monitor.reference import REFERENCE_SET, Reference
from loopml.monitor.reference_store import ensure_reference
from loopml.monitor.retention import EVENT as PRUNED
from loopml.monitor.retention import prune_deployment
from loopml.monitor.service import create_default_rules
from loopml.monitor.shares import CountKey, collect, fold, gateway_states, publish
from loopml.monitor.usage_windows import UsagePieces, add_rows, add_states, keyed
from loopml.monitor.usage_windows import usage_window as usage_row
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
from loopml.predictions import reader
from loopml.settings import MonitorSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, deployments, events
from loopml.store import monitor as rows

log = logging.getLogger("loopml.monitor")
ACTOR = "monitor"
ErrorSource = Callable[[], dict[CountKey, float]]
"""Failed requests by (project, deployment, model, version, status), counted from zero since
the process started."""
CallerSource = Callable[[], dict[CountKey, float]]
"""Requests by (project, deployment, model, version, caller), counted from zero since the
process started."""
ResourceSource = Callable[[], list[ReplicaSample]]
"""Every replica's resources now (the deploy targets that can measure them)."""
WATERMARK = "watermark"


@dataclass
class TickReport:
    """What one round did."""

    deployments: int = 0
    rows: int = 0
    labels: int = 0
    windows: int = 0
    usage_windows: int = 0
    """Usage-only windows written (``monitor.usage_window``), besides ``windows``."""
    events: list[str] = field(default_factory=list)
    skipped: bool = False
    """Another monitor holds the lease: this round did nothing."""


def drift_config(settings: MonitorSettings) -> DriftConfig:
    """The drift thresholds in force."""
    return DriftConfig(
        small_reference=settings.small_reference,
        p_value=settings.drift_p_value,
        distance=settings.drift_distance,
        drift_share=settings.drift_share,
        sequential_share=settings.drift_sequential_share,
    )


class Monitor:
    """Computes windows for every deployment of one database.

    Args:
        store, artifacts: the platform's backends.
        settings: the ``monitor`` settings.
        clock: the current time (tests hand in their own).
        errors: where failed requests are counted (the gateway's metrics), if anywhere.
        callers: where requests are counted per caller (the gateway's), if anywhere.
        resources: where replicas are measured (the deploy targets), if anywhere.
        takes_lease: whether this monitor runs rounds when it can take the lease; false: it
            only leaves its server's counts for the holder each round (the API server
            beside its monitor process, ``monitor.process``).
    """

    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        settings: MonitorSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        errors: ErrorSource | None = None,
        callers: CallerSource | None = None,
        resources: ResourceSource | None = None,
        takes_lease: bool = True,
    ) -> None:
        self.store, self.artifacts, self.settings = store, artifacts, settings
        self.takes_lease = takes_lease
        self.clock = clock
        self.sizes = parse_sizes(settings.windows)
        self.smallest = min(self.sizes.values())
        self.usage = settings.usage_size()
        """The usage-only size and its seconds (``None``: off); never one of ``sizes``."""
        # What the gateways counted goes in the smallest window of either kind of that moment.
        self._grain = self.usage[1] if self.usage else self.smallest
        self.config = drift_config(settings)
        self._sources = {"errors": errors, "callers": callers}
        self._seen: dict[str, dict[CountKey, float]] = {}
        self._resources = resources
        self._with_defaults: set[str] = set()
        self._restarts: dict[tuple[str, str, str], int] = {}
        self.replicas: list[ReplicaSample] = []
        """Every replica's resources at the last round, for /metrics."""
        self._references: dict[tuple[str, str, int], Reference] = {}
        self._event_cursor: int | None = None
        self._pruned: datetime | None = None
        self._stop = threading.Event()
        self.lease = Lease(store, lease_seconds(settings.interval_s))
        self.latest: dict[tuple[str, str], list[Gauge]] = {}
        """Each version's figures over a trailing stretch per (project, deployment), for
        /metrics (``gauges``)."""
        self.alert_states: dict[tuple[str, str, str, str], str] = {}
        """Each rule's state after the last round, by (project, deployment, rule, severity)."""

    # ------------------------------------------------------------------ one round

    def tick(self) -> TickReport:
        """One round over every deployment, if this monitor holds the lease (or can take it)."""
        report = TickReport()
        now = as_utc(self.clock())
        # Every server counts its own gateway and replicas, holder or not (``shares``).
        counts = {name: self._deltas(name) for name in self._sources}
        share = gateway_states(counts, self._measure(), self._restarts, now, self._grain)
        if not (self.takes_lease and self.lease.take(now)):
            try:
                publish(self.store, self.lease.id, share)
            except Exception:
                log.exception("could not leave this server's counts for the monitor")
            report.skipped = True
            return report
        fold(share, collect(self.store))
        self._build_references()
        with self.store.session() as session:
            found = deployments.list_all(session)
        for deployment in found:
            try:
                self._defaults(deployment)
                own = share.get((deployment.project, deployment.name), {})
                self._deployment(deployment, now, own, report)
            except LeaseLost:
                log.info("another monitor took the lease over; this round ends here")
                return report
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
                if self.usage is not None:
                    cutoff = now - timedelta(days=self.settings.usage_retention_days)
                    rows.drop_windows_before(session, cutoff, size=self.usage[0])
            self._prune_logs(found, now, report)
            self._pruned = now
        return report

    def _prune_logs(self, found: list[Deployment], now: datetime, report: TickReport) -> None:
        """Raw prediction-log and feedback rows past ``prediction_retention_days``."""
        if not self.settings.prediction_retention_days:
            return
        for deployment in found:
            try:
                with self.store.session() as session:
                    mark = rows.get_cursor(session, deployment.project, deployment.name, WATERMARK)
                pruned = prune_deployment(
                    self.store, self.artifacts, self.settings, deployment, mark, now, actor=ACTOR
                )
            except Exception:
                log.exception(
                    "pruning the logs of %s/%s failed; retrying in an hour",
                    deployment.project,
                    deployment.name,
                )
                continue
            if pruned is not None:
                report.events.append(PRUNED)

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
        (versions registered while no monitor ran get theirs when first seen serving), and
        forget the cached one of a version whose reference a user replaced (a table)."""
        with self.store.session() as session:
            if self._event_cursor is None:
                self._event_cursor = deployments.latest_event_id(session)
            page = events.list_(
                session, type="model.version.*", cursor=str(self._event_cursor), limit=100
            )
        for event in page.items:
            self._event_cursor = event.id
            if event.type not in ("model.version.ready", REFERENCE_SET):
                continue
            try:
                project, model = event.project or "", str(event.payload["model"])
                key = (project, model, int(event.payload["version"]))
                if event.type == REFERENCE_SET:
                    self._references.pop(key, None)
                self.reference(*key)
            except Exception:
                log.exception("building the reference of %s failed", event.subject)

    def _deltas(self, name: str) -> dict[CountKey, float]:
        """What a cumulative source (``errors``, ``callers``) counted since the last round,
        the first time everything since it started: its counts start at zero with its process,
        as this monitor does, so a request that failed before the first round (a 422 never
        reaches the prediction log) is counted in that round's window, not taken as a
        baseline and lost (issue 55)."""
        source = self._sources[name]
        if source is None:
            return {}
        try:
            current = source()
        except Exception:
            log.exception("could not read the gateway's %s counts", name)
            return {}
        seen = self._seen.get(name, {})
        self._seen[name] = current
        return {k: v - seen.get(k, 0.0) for k, v in current.items() if v > seen.get(k, 0.0)}

    def _defaults(self, deployment: Deployment) -> None:
        """The default alert rules of a deployment seen for the first time."""
        if deployment.id in self._with_defaults:
            return
        created = create_default_rules(
            self.store, deployment, self.settings.default_rules, actor=ACTOR
        )
        if created:
            log.info("default alert rules for %s: %s", deployment.name, ", ".join(created))
        self._with_defaults.add(deployment.id)

    def _measure(self) -> list[ReplicaSample]:
        """This round's replica samples (also kept for /metrics)."""
        if self._resources is None:
            return []
        try:
            samples = self._resources()
        except Exception:
            log.exception("could not measure the replicas")
            return []
        self.replicas = samples
        return samples

    # ------------------------------------------------------------------ one deployment

    def _deployment(
        self,
        deployment: Deployment,
        now: datetime,
        shared: dict[Piece, dict[str, Any]],
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
        minutes: UsagePieces = {}
        for table in reader.predictions_between(
            self.store, self.artifacts, project, name, since_p, until
        ):
            report.rows += table.num_rows
            if self.usage is not None:
                add_rows(minutes, table, self.usage[1])
            for (model, version, start), part in split_pieces(table, self.smallest).items():
                state = piece_state(part, self.reference(project, model, version))
                key = (model, version, start)
                pieces[key] = merge_state(pieces[key], state) if key in pieces else state
        horizon = until - timedelta(seconds=self.settings.label_horizon_s)
        for joined, sign in reader.labelled_between(
            self.store, self.artifacts, project, name, since_f, until, horizon
        ):
            # sign -1: the labels that newer ones replace, taken out of their windows.
            report.labels += joined.num_rows if sign > 0 else 0
            for (model, version, start), part in split_pieces(joined, self.smallest).items():
                state = empty_state()
                state["quality"] = scaled_quality(quality_of(part), sign)
                key = (model, version, start)
                pieces[key] = merge_state(pieces[key], state) if key in pieces else state
        # Failed requests, callers and replica samples: this server's and the others'.
        for key, state in shared.items():
            pieces[key] = merge_state(pieces[key], state) if key in pieces else state
        if self.usage is not None:
            add_states(minutes, shared, self.usage[1])
        written, used = self._save(project, name, pieces, minutes, now, until)
        report.windows += written
        report.usage_windows += used
        report.deployments += 1
        serving = deployment.serving()
        judged = (serving.model, serving.version) if serving else None
        report.events += evaluate_deployment(self, project, name, now, judged)

    def _save(
        self,
        project: str,
        name: str,
        pieces: dict[Piece, dict[str, Any]],
        minutes: UsagePieces,
        now: datetime,
        until: datetime,
    ) -> tuple[int, int]:
        """Every window the pieces fall in, and the usage-only ones, in one transaction with
        the watermark; how many of each."""
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
        size, usage_s = self.usage or ("", 0)
        usage = keyed(name, minutes, size, now.tzinfo) if self.usage else {}
        with self.store.session() as session:
            self.lease.check(session)
            stored = rows.get_windows(session, project, [*windows, *usage])
            for key, state in windows.items():
                old = stored.get(key)
                merged = merge_state(old["state"], state) if old else state
                seconds = self.sizes[key[3]]
                elapsed = min(seconds, max((until - key[4]).total_seconds(), 1.0))
                reference = references[(key[1], key[2])]
                previous = old["summary"] if old else None
                summary = summarize(merged, reference, elapsed, self.config, previous)
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
            for key, used in usage.items():
                elapsed = min(usage_s, max((until - key[4]).total_seconds(), 1.0))
                window = usage_row(used, stored.get(key), key[4], usage_s, elapsed)
                rows.put_window(session, project, key, window)
            rows.set_cursor(
                session,
                project,
                name,
                WATERMARK,
                {"predictions": until.isoformat(), "feedback": until.isoformat()},
            )
        return len(windows), len(usage)

    # ------------------------------------------------------------------ the loop

    def run(self, after_round: Callable[[], None] | None = None) -> None:
        """Tick every ``interval_s`` until ``stop``, calling ``after_round`` after each
        round (its failure is logged, as a round's is)."""
        log.info(
            "monitor started (every %g s, windows %s)", self.settings.interval_s, list(self.sizes)
        )
        # The first round waits one interval: a server that starts and stops at once (tests,
        # `loopml up` failing its port check) never writes anything.
        while not self._stop.wait(self.settings.interval_s):
            try:
                self.tick()
                if after_round is not None:
                    after_round()
            except Exception:
                log.exception("monitor round failed; retrying next round")
        self._release()

    def stop(self) -> None:
        """End ``run`` after its current round, and let the lease go: another server's
        monitor takes over at its next round (a round of this one still running commits
        nothing more, its writes being fenced by the lease)."""
        self._stop.set()
        self._release()

    def _release(self) -> None:
        try:
            self.lease.release()
        except Exception:
            log.exception("could not release the monitor's lease; it expires by itself")


def _moment(text: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(text)) if text else None


class MonitorThread:
    """A monitor running in a background thread of this process (the API server)."""

    def __init__(self, monitor: Monitor, after_round: Callable[[], None] | None = None) -> None:
        self.monitor = monitor
        self._thread = threading.Thread(
            target=monitor.run, args=(after_round,), name="monitor", daemon=True
        )

    def start(self) -> MonitorThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the monitor and wait for its round to end."""
        self.monitor.stop()
        self._thread.join(timeout_s)
