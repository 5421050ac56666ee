"""After a tick's windows are saved: drift episodes and alert rules of one deployment.

A drift episode of a model version opens when its newest judged window of the smallest size
has drifted (``dataset_drift``: a column drifted beyond chance at that window's size, and at
least ``drift_share`` of them did), emitting ``drift.detected`` once; it closes
(``drift.resolved``) when a judged window has not drifted and its drifted share is at most
half of ``drift_share``, so a share wavering at the threshold opens one episode, not one per
window (``episode_change``). While open, the episode emits ``drift.labelled`` once, on the
round when ``drift_min_labels`` labels have joined that version's predictions since it
began: a retrain triggered by it has the labelled rows it needs, however late they came.
Alert rules read the last stretch of time of their size (``trailing``) and go through
``alerts.step``; a rule on a quality metric that starts firing also emits
``quality.degraded``. Webhooks are called after the transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from loopml.core.alerts import QUALITY_METRICS, AlertRuleSpec, step
from loopml.monitor.trailing import Trailing, span_start, trailing
from loopml.monitor.webhooks import deliver, slack_body
from loopml.monitor.windows import parse_size
from loopml.store import alert_rules, events
from loopml.store import monitor as rows

if TYPE_CHECKING:
    from loopml.monitor.drift import DriftConfig
    from loopml.monitor.reference import Reference
    from loopml.settings import MonitorSettings
    from loopml.store import MetadataStore


class Monitor(Protocol):
    """What this module needs of ``engine.Monitor`` (which imports this module)."""

    store: MetadataStore
    settings: MonitorSettings
    config: DriftConfig
    sizes: dict[str, int]
    latest: dict[tuple[str, str], list[dict[str, Any]]]
    alert_states: dict[tuple[str, str, str, str], str]

    def reference(self, project: str, model: str, version: int) -> Reference: ...


log = logging.getLogger("loopml.monitor")
ACTOR = "monitor"
_RECENT = 48


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


def _drift(monitor: Monitor, project: str, name: str, windows: list[dict[str, Any]]) -> list[str]:
    emitted: list[str] = []
    share = monitor.config.drift_share
    with monitor.store.session() as session:
        for (model, version), window in _newest_by_version(windows).items():
            key = f"drift:{model}/{version}"
            episode = rows.get_cursor(session, project, name, key)
            drift = window["summary"]["drift"]
            payload = {
                "deployment": name,
                "model": model,
                "version": version,
                "window_start": window["start"].isoformat(),
                "share": drift["share"],
                "drifted": drift["drifted"][:50],
                "scores": {
                    c["column"]: round(c["score"], 6) for c in drift["columns"] if c["drifted"]
                },
                "p_values": {
                    c["column"]: c.get("p_value") for c in drift["columns"] if c["drifted"]
                },
            }
            kind = episode_change(drift, bool(episode.get("open")), share)
            if kind is not None:
                episode = (
                    {"open": True, "since": payload["window_start"]}
                    if kind == "drift.detected"
                    else {"open": False}
                )
                rows.set_cursor(session, project, name, key, episode)
                events.append(
                    session, type=kind, subject=name, project=project, payload=payload, actor=ACTOR
                )
                emitted.append(kind)
            if episode.get("open") and not episode.get("labelled"):
                emitted += _labelled(monitor, session, project, name, key, episode, payload)
    return emitted


def _labelled(
    monitor: Monitor,
    session: Any,
    project: str,
    name: str,
    key: str,
    episode: dict[str, Any],
    detected: dict[str, Any],
) -> list[str]:
    """``drift.labelled``, once per episode, when ``drift_min_labels`` labels have joined the
    drifted version's predictions in the windows since the episode began: what a retrain
    started by drift waits for, so that labels landing late still start it."""
    model, version = detected["model"], detected["version"]
    size = min(monitor.sizes, key=lambda s: monitor.sizes[s])
    since = datetime.fromisoformat(episode["since"])
    windows = rows.list_windows(session, project, name, size=size, since=since, limit=10_000)
    labels = sum(w["labels"] for w in windows if (w["model"], w["version"]) == (model, version))
    needed = monitor.settings.drift_min_labels
    if labels < needed:
        return []
    rows.set_cursor(session, project, name, key, {**episode, "labelled": True})
    payload = {
        "deployment": name,
        "model": model,
        "version": version,
        "since": episode["since"],
        "labels": labels,
        "min_labels": needed,
    }
    events.append(
        session,
        type="drift.labelled",
        subject=name,
        project=project,
        payload=payload,
        actor=ACTOR,
    )
    return ["drift.labelled"]


def _stretches(
    monitor: Monitor,
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
    monitor: Monitor, project: str, name: str, now: datetime, serving: tuple[str, int] | None
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
    monitor: Monitor, project: str, rule: dict[str, Any], event: str, value: float | None
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
    monitor: Monitor,
    project: str,
    name: str,
    now: datetime,
    serving: tuple[str, int] | None = None,
) -> list[str]:
    """Drift episodes and alert rules of one deployment; the event types emitted. Rules
    judge the ``serving`` version (``Deployment.serving``: the one every face shows)."""
    size = min(monitor.sizes, key=lambda s: monitor.sizes[s])
    with monitor.store.session() as session:
        windows = rows.list_windows(session, project, name, size=size, limit=_RECENT)
    monitor.latest[(project, name)] = windows[:8]
    return _drift(monitor, project, name, windows) + _alerts(monitor, project, name, now, serving)
