"""The monitor as services for the API, the portal and the embedded SDK: a deployment's
monitoring view, its windows, a version's reference, alert rules.

Example:
    >>> view = deployment_view(store, artifacts, "default", "churn-api", size="1h")
    >>> view["drift"]["drifted"]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from loopml.core.alerts import AlertRule, AlertRuleSpec
from loopml.core.clock import as_utc, utcnow
from loopml.core.deployments import Deployment
from loopml.core.errors import AlreadyExistsError, ValidationError
from loopml.monitor.histograms import BARS, Distributions, distributions
from loopml.monitor.reference import Reference
from loopml.monitor.reference_store import ensure_reference, reference_from_table
from loopml.monitor.reference_store import get_reference as stored_reference
from loopml.monitor.webhooks import check_target
from loopml.monitor.windows import parse_size, window_column
from loopml.settings import DefaultAlertRule
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, alert_rules, deployments, model_versions
from loopml.store import monitor as rows

MAX_WINDOWS = 500


def _public(window: dict[str, Any]) -> dict[str, Any]:
    """A window as the API shows it: its figures, not its counts."""
    return {k: v for k, v in window.items() if k not in ("state", "updated_at")}


def list_windows(
    store: MetadataStore, project: str, deployment: str, *, size: str = "1h", limit: int = 24
) -> list[dict[str, Any]]:
    """A deployment's windows of ``size``, newest first (every model version it served)."""
    parse_size(size)
    if not 1 <= limit <= MAX_WINDOWS:
        raise ValidationError(f"limit must be from 1 to {MAX_WINDOWS}, got {limit}")
    with store.session() as session:
        deployments.get(session, project, deployment)
        found = rows.list_windows(session, project, deployment, size=size, limit=limit)
    return [_public(w) for w in found]


def projects_usage(
    store: MetadataStore, projects: Sequence[str], spans: Sequence[tuple[str, datetime]]
) -> list[dict[tuple[str, str], dict[str, Any]]]:
    """Per span (a window size and the earliest start), per ``(project, deployment)`` of
    ``projects``: requests and errors summed over its windows of that size that start at or
    after that time, and the newest window's replica resources (``cpu_percent``,
    ``rss_mb``, ``replicas``; absent without a sample). One query for them all."""
    for size, _ in spans:
        parse_size(size)
    with store.session() as session:
        found = rows.usage_windows(session, projects, spans)
    totals: list[dict[tuple[str, str], dict[str, Any]]] = [{} for _ in spans]
    for window in found:  # oldest first: the newest resources win
        for (size, since), total in zip(spans, totals, strict=True):
            if window["size"] == size and window["start"] >= as_utc(since):
                key = (window["project"], window["deployment"])
                _add_usage(total, key, window["usage"], window["resources"])
    return totals


def deployment_usage(
    store: MetadataStore, project: str, deployment: str, *, size: str, since: datetime
) -> list[dict[str, Any]]:
    """A deployment's windows of ``size`` that start at or after ``since``, oldest first:
    ``start`` and the ``usage`` figures of each (every version it served: one entry each),
    without the windows' counts and drift figures."""
    parse_size(size)
    with store.session() as session:
        deployments.get(session, project, deployment)
        found = rows.usage_windows(session, [project], [(size, since)], deployment=deployment)
    return [{"start": w["start"], "usage": w["usage"]} for w in found]


def _add_usage(
    totals: dict[Any, dict[str, Any]],
    key: Any,
    used: dict[str, Any],
    resources: dict[str, Any] | None,
) -> None:
    entry = totals.setdefault(key, {"requests": 0, "errors": 0})
    entry["requests"] += int(used.get("requests", 0))
    entry["errors"] += int(used.get("errors", 0))
    if resources:
        entry["cpu_percent"] = resources["cpu_percent"]
        entry["rss_mb"] = resources["rss_mb"]
        entry["replicas"] = len(resources["replicas"])


def feature_distributions(
    store: MetadataStore,
    project: str,
    deployment: str,
    *,
    model: str,
    version: int,
    size: str,
    start: datetime,
    bars: int = BARS,
) -> dict[str, Distributions]:
    """Per input feature of one stored window (``deployment``'s window of ``model``
    ``version`` of ``size`` starting at ``start``): its reference distribution beside the
    window's, in about ``bars`` bars. Empty when the window or the version's reference
    profile is missing (drift is off for it)."""
    parse_size(size)
    key = (deployment, model, version, size, start)
    with store.session() as session:
        found = rows.get_windows(session, project, [key])
    reference = stored_reference(store, project, model, version)
    if reference is None or reference.profile is None:
        return {}
    # Every version's window of that start comes back: take this version's (a window of
    # requests refused before any replica, model "", has no feature counts).
    mine = [w for w in found.values() if (w["model"], w["version"]) == (model, version)]
    if not mine:
        return {}
    state = mine[0]["state"] or {}
    features = state.get("features", {})
    return {
        name: distributions(ref, window_column(features.get(name)), bars)
        for name, ref in reference.profile.features.items()
    }


def get_reference(
    store: MetadataStore, artifacts: ArtifactStore, project: str, model: str, version: int
) -> Reference:
    """A version's reference, built first when it has none (versions registered before
    monitoring existed).

    Raises:
        NotFoundError: no such project, model or version.
    """
    with store.session() as session:
        model_versions.get(session, project, model, version)
    return ensure_reference(store, artifacts, project, model, version)


def set_reference_table(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    model: str,
    version: int,
    table: str,
    *,
    actor: str,
    target: str | None = None,
) -> Reference:
    """Build a version's reference from a lake table (``name`` or ``name@version``) in place
    of the one it had, calibrated on the table's ``target`` labels when named; the monitor
    uses it from its next round.

    Raises:
        NotFoundError: no such project, model, version or table.
        ValidationError: the table lacks the model's input columns or the target, has too
            few rows, or a target is named for a regressor.
    """
    return reference_from_table(
        store, artifacts, project, model, version, table, actor=actor, target=target
    )


def deployment_now(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    deployment: str,
    *,
    size: str = "1h",
) -> dict[str, Any]:
    """The figures for this deployment now, the one answer the portal's page,
    ``loopml monitor`` (table and JSON) and the API show: the version serving it (the
    revision taking the most traffic, ``Deployment.serving``, the version alert rules
    judge too), that version's newest window of ``size`` (``None`` before it answered a
    request, with ``reason`` saying so), its reference, and what the other versions (and
    requests refused before any replica, model ``""``) did in a window of the same start.

    Raises:
        NotFoundError: no such project or deployment.
        ValidationError: ``size`` is not a window size.
    """
    parse_size(size)
    with store.session() as session:
        found = deployments.get(session, project, deployment)
        serving = found.serving()
        window = (
            rows.newest_window(
                session, project, deployment, serving.model, serving.version, size=size
            )
            if serving
            else None
        )
        beside = (
            rows.get_windows(
                session,
                project,
                [(deployment, window["model"], window["version"], size, window["start"])],
            )
            if window
            else {}
        )
    now: dict[str, Any] = {
        "model": serving.model if serving else None,
        "version": serving.version if serving else None,
        "traffic_percent": found.traffic.get(serving.number, 0) if serving else 0,
        "window": _public(window) if window else None,
        "reason": "",
        "reference": None,
        "others": [],
    }
    if serving is None:
        now["reason"] = "no version takes traffic"
        return now
    now["reference"] = _reference_view(
        ensure_reference(store, artifacts, project, serving.model, serving.version)
    )
    if window is None:
        now["reason"] = (
            f"{serving.model}/{serving.version} has no window of {size} yet: it has answered "
            "no request the monitor has read"
        )
        return now
    now["others"] = [
        _other(w)
        for w in sorted(beside.values(), key=lambda w: (w["model"], w["version"]))
        if (w["model"], w["version"]) != (serving.model, serving.version)
    ]
    _mark_retired(now, set(found.traffic))
    return now


def _mark_retired(now: dict[str, Any], live: set[int]) -> None:
    """Say of each replica measured in the window whether its revision still takes
    traffic (``retired``: it was replaced, by a promotion, a rollback or a new spec, and
    its figures are from before that)."""
    replicas = list(now["window"]["summary"].get("resources", {}).get("replicas", []))
    for other in now["others"]:
        replicas += other["replicas"]
    for replica in replicas:
        revision = str(replica["replica"]).partition("/")[0].removeprefix("r")
        replica["retired"] = not revision.isdigit() or int(revision) not in live


def _other(window: dict[str, Any]) -> dict[str, Any]:
    used = window["summary"].get("usage", {})
    return {
        "model": window["model"],
        "version": window["version"],
        "requests": int(used.get("requests", 0)),
        "errors": int(used.get("errors", 0)),
        "errors_by_status": used.get("errors_by_status") or {},
        "replicas": window["summary"].get("resources", {}).get("replicas", []),
    }


def deployment_view(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    deployment: str,
    *,
    size: str = "1h",
) -> dict[str, Any]:
    """Everything the dashboard shows: ``now`` (``deployment_now``: the serving version's
    figures, what every face shows), the recent windows of every version, the references
    of the versions they served, the rules and which are firing."""
    now = deployment_now(store, artifacts, project, deployment, size=size)
    windows = list_windows(store, project, deployment, size=size, limit=24)
    versions = sorted({(w["model"], w["version"]) for w in windows if w["model"]})
    references = {
        f"{model}/{version}": _reference_view(
            ensure_reference(store, artifacts, project, model, version)
        )
        for model, version in versions
    }
    rules = list_rules(store, project, deployment)
    return {
        "project": project,
        "deployment": deployment,
        "size": size,
        "now": now,
        "windows": windows,
        "references": references,
        "alerts": [r.model_dump(mode="json") for r in rules],
        "firing": [r.name for r in rules if r.state == "firing"],
    }


def _reference_view(reference: Reference) -> dict[str, Any]:
    profile = reference.profile
    return {
        "status": reference.status,
        "reason": reference.reason,
        "source": reference.source,
        "origin": profile.origin if profile else None,
        "rows": profile.rows if profile else 0,
        "features": len(profile.features) if profile else 0,
    }


# ---------------------------------------------------------------------- alert rules


def _rule(data: dict[str, Any]) -> AlertRule:
    return AlertRule.model_validate(data)


def create_rule(
    store: MetadataStore,
    project: str,
    spec: AlertRuleSpec,
    *,
    allow: Sequence[str] = (),
    actor: str,
) -> AlertRule:
    """Add an alert rule; its webhook, if any, is checked now (``WebhookRefused``, a 422)."""
    parse_size(spec.window)
    if spec.webhook:
        check_target(spec.webhook, allow)
    fields = spec.model_dump()
    fields["clear_threshold"] = spec.clear()
    with store.session() as session:
        deployments.get(session, project, spec.deployment)
        return _rule(alert_rules.create(session, project, fields, actor=actor))


DEFAULTS = "default_rules"


def create_default_rules(
    store: MetadataStore, deployment: Deployment, rules: Sequence[DefaultAlertRule], *, actor: str
) -> list[str]:
    """Create the default rules of a deployment once (named ``DEPLOYMENT-SUFFIX``): the
    names created, none when this deployment (by id: a new one of the same name gets its
    own) already had them. A rule of that name that exists is kept as it is."""
    project, name = deployment.project, deployment.name
    with store.session() as session:
        done = rows.get_cursor(session, project, name, DEFAULTS)
    if done.get("deployment_id") == deployment.id:
        return []
    created = []
    for default in rules:
        fields = default.model_dump(exclude={"suffix"})
        spec = AlertRuleSpec(name=f"{name}-{default.suffix}", deployment=name, **fields)
        try:
            create_rule(store, project, spec, actor=actor)
        except AlreadyExistsError:
            continue
        created.append(spec.name)
    with store.session() as session:
        rows.set_cursor(session, project, name, DEFAULTS, {"deployment_id": deployment.id})
    return created


def list_rules(
    store: MetadataStore, project: str, deployment: str | None = None
) -> list[AlertRule]:
    """A project's alert rules (of one deployment), by name."""
    with store.session() as session:
        return [_rule(r) for r in alert_rules.list_(session, project, deployment)]


def firing_rules(store: MetadataStore, projects: Sequence[str]) -> list[AlertRule]:
    """The rules firing now in any of ``projects``, by project and name (one query)."""
    with store.session() as session:
        return [_rule(r) for r in alert_rules.firing_in(session, projects)]


def get_rule(store: MetadataStore, project: str, name: str) -> AlertRule:
    """One alert rule."""
    with store.session() as session:
        return _rule(alert_rules.get(session, project, name))


def delete_rule(store: MetadataStore, project: str, name: str, *, actor: str) -> None:
    """Remove an alert rule."""
    with store.session() as session:
        alert_rules.delete(session, project, name, actor=actor)


def silence_rule(
    store: MetadataStore, project: str, name: str, *, seconds: float, actor: str
) -> AlertRule:
    """Stop a rule's notifications for ``seconds`` (0 resumes them); its state still moves."""
    if not 0 <= seconds <= 90 * 86_400:
        raise ValidationError(
            f"seconds must be from 0 to {90 * 86_400} (90 days), got {seconds}",
            details={"field": "seconds"},
        )
    until: datetime | None = utcnow() + timedelta(seconds=seconds) if seconds else None
    with store.session() as session:
        return _rule(alert_rules.silence(session, project, name, until, actor=actor))


def rule_deliveries(store: MetadataStore, project: str, name: str) -> list[dict[str, Any]]:
    """A rule's webhook notifications, newest first."""
    with store.session() as session:
        return alert_rules.deliveries(session, project, name)
