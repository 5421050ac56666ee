"""What the deployment page reads (blocking: run it in a worker thread): the deployment and
its history, the served version's signature and example row, the monitor's windows as chart
series, drift, quality, alerts and the replicas measured now.

The signature and the example row come from the served version's package in the artifact
store (``loopml-model.json`` and ``input_example.json``, as ``loopml deploy`` prints its
curl line); the manifest is checked against the hash the registry recorded before it is
believed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loopml.core import layout
from loopml.core.deployments import Deployment, Revision
from loopml.core.errors import LoopmlError
from loopml.deploy import DeploymentControl
from loopml.deploy.replicas import ReplicaList, deployment_replicas
from loopml.faces.context import MetadataStore
from loopml.monitor import service as monitor
from loopml.monitor.windows import parse_size
from loopml.packaging import MANIFEST_FILE, ModelManifest, Signature
from loopml.portal.pages._histograms import DriftPair, drift_pair
from loopml.registry import service as registry
from loopml.settings import Settings
from loopml.storage import ArtifactStore

log = logging.getLogger("loopml.portal")
WINDOWS = 48
"""Windows of the chart's size drawn (newest last)."""
MAX_EXAMPLE_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 1 << 20
INPUT_EXAMPLE_FILE = "input_example.json"
"""The package's example rows (the only name a package may give them)."""


@dataclass
class ModelFacts:
    """The served version's signature and first example row (``None`` when unknown)."""

    signature: Signature | None = None
    example: dict[str, Any] | None = None


@dataclass
class Detail:
    """Everything the deployment page shows."""

    deployment: Deployment
    revisions: list[Revision]
    serving: Revision | None
    facts: ModelFacts
    size: str
    series: dict[str, list[float | None]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    now: dict[str, Any] = field(default_factory=dict)
    latest: dict[str, Any] | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)
    drift_status: dict[str, Any] = field(default_factory=dict)
    drift_prediction: dict[str, Any] | None = None
    pictures: dict[str, DriftPair] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    firing: list[str] = field(default_factory=list)
    replicas: ReplicaList | None = None


REVISIONS_LISTED = 5
"""The newest revisions the deployment page lists besides the live ones, unless asked for all
(``?revisions=all``): a deployment redeployed for months gathers one a promotion, and the
page must stay a page (the API's deployment carries the newest 20)."""


def listed_revisions(detail: Detail, every: bool) -> list[Revision]:
    """The revisions the deployment page lists, newest first: all of them when ``every``,
    else the live ones (taking traffic, or the shadow's copy) and the newest others, up to
    ``REVISIONS_LISTED`` of those."""
    newest = sorted(detail.revisions, key=lambda r: r.number, reverse=True)
    if every:
        return newest
    live = detail.deployment.live_revisions()
    recent = [r.number for r in newest if r.number not in live][:REVISIONS_LISTED]
    return [r for r in newest if r.number in live or r.number in recent]


def serving_revision(deployment: Deployment) -> Revision | None:
    """The revision taking the most traffic (the primary): ``Deployment.serving``."""
    return deployment.serving()


def model_facts(
    store: MetadataStore, artifacts: ArtifactStore, project: str, model: str, version: int
) -> ModelFacts:
    """The version's signature and first example row, from its package (empty when the
    package cannot be read: the page still shows the rest)."""
    facts = ModelFacts()
    try:
        found = registry.get_version(store, project, model, version)
        info = registry.package_location(store, found.logged_model_id)
        prefix = f"{layout.run_artifacts_prefix(info.project_id, info.run_id)}/{info.path}"
        with artifacts.open(f"{prefix}/{MANIFEST_FILE}") as file:
            raw = file.read(MAX_MANIFEST_BYTES + 1)
        if hashlib.sha256(raw).hexdigest() != found.manifest_sha256:
            log.warning("the manifest of %s/%s does not match the registry", model, version)
            return facts
        manifest = ModelManifest.model_validate_json(raw)
        facts.signature = manifest.signature
        with artifacts.open(f"{prefix}/{INPUT_EXAMPLE_FILE}") as file:
            rows = json.loads(file.read(MAX_EXAMPLE_BYTES))
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            facts.example = rows[0]
    except (LoopmlError, OSError, ValueError) as exc:
        log.info("no signature or example for %s/%s: %s", model, version, exc)
    if facts.signature is not None and facts.example is None:
        facts.example = made_row(facts.signature)
    return facts


def made_row(signature: Signature) -> dict[str, Any]:
    """A row of placeholder values typed as the signature says (when no example exists)."""
    blank: dict[str, Any] = {
        "float": 0.0,
        "integer": 0,
        "string": "",
        "boolean": False,
        "datetime": "2024-01-01",
    }
    return {c.name: blank[c.type] for c in signature.inputs}


def _series(windows: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Per window start (oldest first): requests/s, errors, latency percentiles, summed over
    the versions served in it (latency: the busiest version's)."""
    by_start: dict[str, list[dict[str, Any]]] = {}
    for window in windows:
        by_start.setdefault(str(window["start"]), []).append(window)
    series: dict[str, list[float | None]] = {
        k: [] for k in ("t", "rps", "errors", "p50", "p95", "p99")
    }
    for start in sorted(by_start):
        group = [w["summary"].get("usage", {}) for w in by_start[start]]
        busiest = max(group, key=lambda u: u.get("requests", 0))
        series["t"].append(_epoch(by_start[start][0]["start"]))
        series["rps"].append(sum(u.get("requests_per_s", 0.0) for u in group))
        series["errors"].append(float(sum(u.get("errors", 0) for u in group)))
        for q in ("p50", "p95", "p99"):
            series[q].append(busiest.get(f"latency_{q}_ms"))
    return series


def _epoch(value: Any) -> float:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.timestamp()


def _pictures(
    store: MetadataStore, project: str, name: str, window: dict[str, Any], size: str
) -> dict[str, DriftPair]:
    found = monitor.feature_distributions(
        store,
        project,
        name,
        model=window["model"],
        version=window["version"],
        size=size,
        start=window["start"],
    )
    return {column: drift_pair(d) for column, d in found.items()}


def gather(
    store: MetadataStore,
    artifacts: ArtifactStore,
    control: DeploymentControl,
    settings: Settings,
    project: str,
    name: str,
) -> Detail:
    """Read the deployment page's data (blocking)."""
    deployment = control.get(project, name)
    revisions = control.revisions(project, name)
    serving = serving_revision(deployment)
    facts = (
        model_facts(store, artifacts, project, serving.model, serving.version)
        if serving
        else ModelFacts()
    )
    size = min(settings.monitor.windows, key=parse_size)
    detail = Detail(deployment, revisions, serving, facts, size)
    windows = monitor.list_windows(store, project, name, size=size, limit=WINDOWS)
    detail.series = _series(windows)
    detail.rows = sorted(windows, key=lambda w: str(w["start"]), reverse=True)
    # The figures for this deployment now: the serving version's newest window, as
    # ``loopml monitor`` and the API show them (one function decides).
    detail.now = monitor.deployment_now(store, artifacts, project, name, size=size)
    if detail.now["window"]:
        detail.latest = detail.now["window"]
        summary = detail.latest["summary"]
        drift = summary.get("drift", {})
        detail.drift_status = drift
        columns = drift.get("columns", [])
        detail.drift = sorted(columns, key=lambda c: (not c["drifted"], -c["psi"]))
        # The model's output, judged against its training predictions, as the CLI shows it.
        detail.drift_prediction = drift.get("prediction")
        if columns:
            detail.pictures = _pictures(store, project, name, detail.latest, size)
        detail.quality = summary.get("quality", {})
    rules = monitor.list_rules(store, project, name)
    detail.alerts = [r.model_dump(mode="json") for r in rules]
    detail.firing = [r.name for r in rules if r.state == "firing"]
    detail.replicas = deployment_replicas(control, project, name)
    return detail
