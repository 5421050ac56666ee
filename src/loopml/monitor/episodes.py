"""After a tick's windows are saved: drift episodes and alert rules of one deployment.

A drift episode of a model version opens when its newest judged window of the smallest size
has drifted (``dataset_drift``: a column drifted beyond chance at that window's size, and at
least ``drift_share`` of them did), emitting ``drift.detected`` once; it closes
(``drift.resolved``) when a judged window has not drifted and its drifted share is at most
half of ``drift_share``, so a share wavering at the threshold opens one episode, not one per
window (``episode_change``). An episode's ``onset`` is the change point of the drifted rows
(``onset``), not its window's start. While open, the episode emits ``drift.labelled`` on the
round when ``drift_min_labels`` labels have joined that version's answers made since the
onset: a retrain triggered by it has the labelled rows it needs, however late they came, and
the labels of the answers made before the shift do not count. After a refusal (``_refused``)
it emits it again at twice the last count while the version is still served.
Alert rules read the last stretch of time of their size (``trailing``) and go through
``alerts.step``; a rule on a quality metric that starts firing also emits
``quality.degraded``. Webhooks are called after the transaction.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.alerts import QUALITY_METRICS, AlertRuleSpec, step
from loopml.monitor.gauges import Gauge, gauges, look_back_start
from loopml.monitor.onset import onset_index
from loopml.monitor.trailing import Trailing, span_start, trailing
from loopml.monitor.webhooks import deliver, slack_body
from loopml.monitor.windows import parse_size, parsed_inputs, window_start
from loopml.predictions import reader
from loopml.store import alert_rules, events
from loopml.store import monitor as rows

if TYPE_CHECKING:
    from loopml.monitor.drift import DriftConfig
    from loopml.monitor.reference import Reference
    from loopml.settings import MonitorSettings
    from loopml.storage import ArtifactStore
    from loopml.store import MetadataStore


class MonitorView(Protocol):
    """What this module needs of ``engine.Monitor`` (which imports this module)."""

    store: MetadataStore
    artifacts: ArtifactStore
    settings: MonitorSettings
    config: DriftConfig
    sizes: dict[str, int]
    latest: dict[tuple[str, str], list[Gauge]]
    alert_states: dict[tuple[str, str, str, str], str]

    def reference(self, project: str, model: str, version: int) -> Reference: ...


log = logging.getLogger("loopml.monitor")
ACTOR = "monitor"
_RECENT = 48
ONSET_ROWS = 200_000
MOVED = 0.05
"""The newest rows an onset is found among (a busy deployment's two windows, bounded)."""
Version = tuple[str, int]


def _newest_by_version(windows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Per model version, its newest window whose drift was judged."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for window in windows:  # newest first
        key = (window["model"], window["version"])
        drift = window["summary"].get("drift", {})
        if key not in found and drift.get("status") == "ready" and drift.get("judged"):
            found[key] = window
    return found


def episode_change(drift: dict[str, Any], is_open: bool, drift_share: float) -> str | None:
    """The event a judged window's drift summary emits: ``drift.detected`` opens an
    episode, ``drift.resolved`` closes the open one, None leaves it as it is."""
    if drift["dataset_drift"] and not is_open:
        return "drift.detected"
    if is_open and not drift["dataset_drift"] and drift["share"] <= drift_share / 2:
        return "drift.resolved"
    return None


def _cursor(key: Version) -> str:
    return f"drift:{key[0]}/{key[1]}"


def _drift(
    monitor: MonitorView,
    project: str,
    name: str,
    windows: list[dict[str, Any]],
    until: datetime,
    serving: Version | None,
) -> list[str]:
    """Open and close each version's episode on its newest judged window, and emit its
    ``drift.labelled`` when due. What reads the lake (the onset, the labels) runs between
    the transaction that reads the episodes and the one that writes them."""
    share = monitor.config.drift_share
    newest = _newest_by_version(windows)
    with monitor.store.session() as session:
        before = {key: rows.get_cursor(session, project, name, _cursor(key)) for key in newest}
    changes = {
        key: episode_change(window["summary"]["drift"], bool(before[key].get("open")), share)
        for key, window in newest.items()
    }
    after: dict[Version, dict[str, Any]] = {}
    for key, kind in changes.items():
        start = newest[key]["start"]
        if kind == "drift.detected":
            columns = _moved(newest[key]["summary"]["drift"])
            onset = _onset(monitor, project, name, key, start, columns, until)
            after[key] = {
                "open": True,
                "since": start.isoformat(),
                "onset": onset.isoformat(),
                "columns": columns,
            }
        else:
            after[key] = {"open": False} if kind == "drift.resolved" else before[key]
    counts = {
        key: count
        for key, episode in after.items()
        if _due(episode, key, serving)
        and (count := _labels(monitor, project, name, key, episode, until)) is not None
    }
    emitted: list[str] = []
    with monitor.store.session() as session:
        for key, window in newest.items():
            kind, episode = changes[key], after[key]
            if kind is not None:
                payload = _detected(name, key, window)
                if kind == "drift.detected":
                    payload["onset"] = episode["onset"]
                rows.set_cursor(session, project, name, _cursor(key), episode)
                events.append(
                    session, type=kind, subject=name, project=project, payload=payload, actor=ACTOR
                )
                emitted.append(kind)
            if key in counts and counts[key][0] >= _threshold(monitor, episode):
                labels, onset = counts[key]
                episode = {**episode, "onset": onset.isoformat(), "refined": True}
                _emit_labelled(monitor, session, project, name, key, episode, labels)
                emitted.append("drift.labelled")
    return emitted


def _detected(name: str, key: Version, window: dict[str, Any]) -> dict[str, Any]:
    drift = window["summary"]["drift"]
    return {
        "deployment": name,
        "model": key[0],
        "version": key[1],
        "window_start": window["start"].isoformat(),
        "share": drift["share"],
        "drifted": drift["drifted"][:50],
        "scores": {c["column"]: round(c["score"], 6) for c in drift["columns"] if c["drifted"]},
        "p_values": {c["column"]: c.get("p_value") for c in drift["columns"] if c["drifted"]},
    }


def _moved(drift: dict[str, Any]) -> list[str]:
    """The columns an onset is found on: the drifted ones, then those whose p-value is
    under ``MOVED`` (a shift seen early, on few rows, is often significant in one column
    and on its way in the others: more columns that moved together place it better)."""
    drifted = list(drift["drifted"])
    moved = [
        c["column"]
        for c in drift["columns"]
        if c["column"] not in drifted and c.get("judged") and c.get("p_value", 1.0) < MOVED
    ]
    return [*drifted, *moved][:50]


def _onset(
    monitor: MonitorView,
    project: str,
    name: str,
    key: Version,
    start: datetime,
    names: list[str],
    until: datetime,
) -> datetime:
    """When the drift seen in the window starting at ``start`` began: the change point
    (``onset``) of the columns ``names`` over the version's rows of this window and the one
    before it (the unshifted rows the change is told from), in the order they were answered;
    the window's start when its rows cannot be read."""
    reference = monitor.reference(project, key[0], key[1])
    profile = reference.profile
    if profile is None:
        return start
    columns = {c: profile.features[c] for c in names if c in profile.features}
    smallest = min(monitor.sizes.values())
    since = start - timedelta(seconds=smallest)
    try:
        parts = [
            part.filter(
                pc.and_(
                    pc.and_(
                        pc.equal(part["model"], key[0]), pc.equal(part["model_version"], key[1])
                    ),
                    pc.is_valid(part["inputs"]),
                )
            ).select(["ts", "inputs"])
            for part in reader.predictions_between(
                monitor.store, monitor.artifacts, project, name, since, until
            )
        ]
        found = pa.concat_tables(parts) if parts else None
        if found is None or not found.num_rows:
            return start
        found = found.sort_by("ts").slice(max(found.num_rows - ONSET_ROWS, 0))
        inputs = parsed_inputs(found, reference)
    except (pa.ArrowException, OSError, ValueError) as exc:
        log.warning("%s/%s: the drift's onset could not be read (%s)", project, name, exc)
        return start
    if inputs is None or inputs.num_rows != found.num_rows:
        return start
    moment: datetime = found["ts"][onset_index(columns, inputs)].as_py()
    return moment.replace(tzinfo=UTC)


def _due(episode: dict[str, Any], key: Version, serving: Version | None) -> bool:
    """An open episode waits for its labels; once labelled, it may re-arm only while its
    version is still the one served (``_refused`` says whether it does)."""
    if not episode.get("open"):
        return False
    return not episode.get("labelled") or serving in (None, key)


def _refused(monitor: MonitorView, project: str, name: str, key: Version, after: str) -> bool:
    """Whether the change the last ``drift.labelled`` asked for was refused since: a
    ``gate.failed`` of the model, or a canary of the deployment rolled back. A retrain still
    running, or never started, re-arms nothing."""
    since = datetime.fromisoformat(after)
    kinds = (("gate.failed", key[0]), ("deployment.canary.rolled_back", name))
    with monitor.store.session() as session:
        for kind, subject in kinds:
            found = events.list_(session, type=kind, project=project, since=since, limit=1000)
            if any(e.subject == subject for e in found.items):
                return True
    return False


def _threshold(monitor: MonitorView, episode: dict[str, Any]) -> int:
    """Labels the next ``drift.labelled`` needs: ``drift_min_labels``, then twice the count
    the last one had."""
    needed = monitor.settings.drift_min_labels
    if not episode.get("labelled"):
        return needed
    return 2 * int(episode.get("labels") or needed)


def _labels(
    monitor: MonitorView,
    project: str,
    name: str,
    key: Version,
    episode: dict[str, Any],
    until: datetime,
) -> tuple[int, datetime] | None:
    """Labels of the version's answers made since the episode's onset, and that onset;
    ``None`` when the windows since then (which count every label of the onset's whole
    window, an upper bound) hold too few to be worth the exact count. Before its first
    count the onset is found again: at detection a shift may be a few dozen rows old, which
    places it within a few rows; by the time its labels are in there are many more."""
    if episode.get("labelled") and not _refused(
        monitor, project, name, key, episode.get("labelled_at") or episode["since"]
    ):
        return None
    onset = datetime.fromisoformat(episode.get("onset") or episode["since"])
    smallest = min(monitor.sizes.values())
    size = min(monitor.sizes, key=lambda s: monitor.sizes[s])
    with monitor.store.session() as session:
        windows = rows.list_windows(
            session, project, name, size=size, since=window_start(onset, smallest), limit=10_000
        )
    upper = sum(w["labels"] for w in windows if (w["model"], w["version"]) == key)
    if upper < _threshold(monitor, episode):
        return None
    if not episode.get("refined") and episode.get("columns"):
        start = datetime.fromisoformat(episode["since"])
        onset = _onset(monitor, project, name, key, start, episode["columns"], until)
    count = reader.labels_since(monitor.store, monitor.artifacts, project, name, key, onset, until)
    return count, onset


def _emit_labelled(
    monitor: MonitorView,
    session: Any,
    project: str,
    name: str,
    key: Version,
    episode: dict[str, Any],
    labels: int,
) -> None:
    """``drift.labelled``: the episode's onset and how many of the answers since then have
    their labels. ``round`` 1 is the first; a later round, at twice the last one's count,
    means the change the last one started was refused (``_refused``) and the drifted version
    is still served."""
    turn = int(episode.get("round") or (1 if episode.get("labelled") else 0)) + 1
    payload = {
        "deployment": name,
        "model": key[0],
        "version": key[1],
        "since": episode.get("onset") or episode["since"],
        "labels": labels,
        "min_labels": monitor.settings.drift_min_labels,
        "round": turn,
    }
    event = events.append(
        session, type="drift.labelled", subject=name, project=project, payload=payload, actor=ACTOR
    )
    at = event.time.isoformat()
    done = {"labelled": True, "labels": labels, "round": turn, "labelled_at": at}
    rows.set_cursor(session, project, name, _cursor(key), {**episode, **done})


def _stretches(
    monitor: MonitorView,
    project: str,
    name: str,
    rules: list[dict[str, Any]],
    now: datetime,
    serving: tuple[str, int] | None,
) -> dict[str, Trailing | None]:
    """What each rule's window size reads: its last stretch of time, from the smallest
    windows (one query for the longest). Summing them may build a reference, which writes:
    not inside a transaction (SQLite allows one writer)."""
    size = min(monitor.sizes, key=lambda s: monitor.sizes[s])
    smallest = monitor.sizes[size]
    lengths = {r["window"]: parse_size(r["window"]) for r in rules}
    if not lengths:
        return {}
    since = span_start(now, max(lengths.values()), smallest)
    with monitor.store.session() as session:
        windows = rows.list_windows(session, project, name, size=size, since=since, limit=10_000)

    def reference(model: str, version: int) -> Reference:
        return monitor.reference(project, model, version)

    return {
        label: trailing(windows, now, seconds, smallest, reference, monitor.config, serving)
        for label, seconds in lengths.items()
    }


def _alerts(
    monitor: MonitorView, project: str, name: str, now: datetime, serving: tuple[str, int] | None
) -> list[str]:
    emitted: list[str] = []
    notify: list[tuple[dict[str, Any], str, float | None]] = []
    with monitor.store.session() as session:
        rules = [r for r in alert_rules.list_(session, project, name) if r["enabled"]]
    stretches = _stretches(monitor, project, name, rules, now, serving)
    with monitor.store.session() as session:
        for rule in rules:
            stretch = stretches[rule["window"]]
            value = stretch.value(rule["metric"]) if stretch else None
            spec = AlertRuleSpec.model_validate({k: rule[k] for k in AlertRuleSpec.model_fields})
            moved = step(spec, rule["state"], rule["state_since"], value, now)
            alert_rules.set_state(
                session, project, rule["name"], state=moved.state, since=moved.since, value=value
            )
            monitor.alert_states[(project, name, rule["name"], rule["severity"])] = moved.state
            if moved.event is None:
                continue
            emitted += _emit(session, project, name, rule, moved.event, value, stretch)
            silenced = rule["silenced_until"] is not None and rule["silenced_until"] > now
            if rule["webhook"] and not silenced:
                notify.append((rule, moved.event, value))
    for rule, event, value in notify:
        _notify(monitor, project, rule, event, value)
    return emitted


def _emit(
    session: Any,
    project: str,
    name: str,
    rule: dict[str, Any],
    event: str,
    value: float | None,
    stretch: Trailing | None,
) -> list[str]:
    """Write the rule's transition as an event (and ``quality.degraded`` when a quality
    rule starts firing); the types written."""
    payload = {
        "rule": rule["name"],
        "deployment": name,
        "metric": rule["metric"],
        "value": value,
        "threshold": rule["threshold"],
        "severity": rule["severity"],
        "model": stretch.model if stretch else None,
        "version": stretch.version if stretch else None,
    }
    types = [event]
    if event == "alert.firing" and rule["metric"] in QUALITY_METRICS:
        types.append("quality.degraded")
    for kind in types:
        events.append(
            session, type=kind, subject=name, project=project, payload=payload, actor=ACTOR
        )
    return types


def _notify(
    monitor: MonitorView, project: str, rule: dict[str, Any], event: str, value: float | None
) -> None:
    settings = monitor.settings
    outcome = deliver(
        rule["webhook"],
        slack_body(event, rule, value),
        allow=settings.webhook_allow,
        attempts=settings.webhook_attempts,
        timeout_s=settings.webhook_timeout_s,
    )
    with monitor.store.session() as session:
        alert_rules.add_delivery(
            session,
            project,
            rule["name"],
            url=rule["webhook"],
            event=event,
            outcome=outcome.outcome,
            attempts=outcome.attempts,
            status=outcome.status,
            error=outcome.error,
        )


def evaluate_deployment(
    monitor: MonitorView,
    project: str,
    name: str,
    now: datetime,
    serving: tuple[str, int] | None = None,
) -> list[str]:
    """Drift episodes and alert rules of one deployment; the event types emitted. Rules
    judge the ``serving`` version (``Deployment.serving``: the one every face shows)."""
    size = min(monitor.sizes, key=lambda s: monitor.sizes[s])
    smallest = monitor.sizes[size]
    since = look_back_start(now, smallest)
    with monitor.store.session() as session:
        windows = rows.list_windows(session, project, name, size=size, limit=_RECENT)
        looked = rows.list_windows(session, project, name, size=size, since=since, limit=10_000)

    def reference(model: str, version: int) -> Reference:
        return monitor.reference(project, model, version)

    monitor.latest[(project, name)] = gauges(looked, now, smallest, reference, monitor.config)
    until = now - timedelta(seconds=monitor.settings.lag_s)
    return _drift(monitor, project, name, windows, until, serving) + _alerts(
        monitor, project, name, now, serving
    )
