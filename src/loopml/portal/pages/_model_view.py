"""What the models pages read: a model's versions with their gate verdicts, evaluations and
run metrics; a version's lineage (inputs → run → version → deployments); two versions side
by side. Blocking: the pages run these in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from loopml.core.deployments import Deployment
from loopml.core.gate import GatePolicy, GateResult, StoredEvaluation
from loopml.core.refs import ModelRef
from loopml.core.registry import LineageInput, ModelVersion, RegisteredModel, VersionLineage
from loopml.core.run_search import RunSearch
from loopml.core.runs import Run
from loopml.deploy import DeploymentControl
from loopml.faces.context import MetadataStore
from loopml.portal.pages._dag import Dag, layout
from loopml.registry import gate
from loopml.registry import service as registry
from loopml.registry.lineage import version_lineage
from loopml.train import tracking
from loopml.train.tracking import artifacts as run_artifacts

VERSIONS_PAGE = 20


@dataclass
class VersionRow:
    """One version with what its row and its gate report show."""

    version: ModelVersion
    gate: GateResult | None
    evaluation: StoredEvaluation | None
    run_metrics: dict[str, float]


@dataclass
class ModelView:
    """What a model's page shows."""

    model: RegisteredModel
    policy: GatePolicy
    rows: list[VersionRow] = field(default_factory=list)
    next_cursor: str | None = None
    lineage: VersionLineage | None = None
    deployments: list[Deployment] = field(default_factory=list)
    graph: Dag | None = None


def _run_metrics(store: MetadataStore, project: str, run_ids: list[str]) -> dict[str, Run]:
    if not run_ids:
        return {}
    spec = RunSearch.model_validate(
        {"run_ids": sorted(set(run_ids)), "lifecycle": "all", "include": ["metrics"], "limit": 1000}
    )
    return {r.id: r for r in tracking.search_runs(store, project, spec).items}


def deployments_of(
    control: DeploymentControl, project: str, model: str, version: int
) -> list[Deployment]:
    """The deployments of ``project`` serving ``model`` ``version`` in one of their
    revisions (primary, canary or shadow)."""
    return [
        d
        for d in control.list_all()
        if d.project == project
        and any(r.model == model and r.version == version for r in d.revisions)
    ]


def gather_model(
    store: MetadataStore,
    control: DeploymentControl,
    project: str,
    name: str,
    *,
    cursor: int | None,
    selected: int | None,
) -> ModelView:
    """A model, one page of its versions, and the lineage of ``selected`` (by default the
    newest version on the page)."""
    model = registry.get_model(store, project, name)
    view = ModelView(model=model, policy=gate.policy_in_force(store, project, name))
    page = registry.list_versions(store, project, name, limit=VERSIONS_PAGE, cursor=cursor)
    view.next_cursor = page.next_cursor
    runs = _run_metrics(store, project, [v.run_id for v in page.items])
    for version in page.items:
        results = gate.list_results(store, project, name, version.version, limit=1)
        evaluations = gate.list_evaluations(store, project, name, version.version)
        run = runs.get(version.run_id)
        view.rows.append(
            VersionRow(
                version=version,
                gate=results[0] if results else None,
                evaluation=evaluations[0] if evaluations else None,
                run_metrics=dict(run.metrics or {}) if run else {},
            )
        )
    chosen = selected if selected is not None else (page.items[0].version if page.items else None)
    if chosen is not None:
        view.lineage = version_lineage(store, project, ModelRef(name=name, version=chosen))
        view.deployments = deployments_of(control, project, name, chosen)
        view.graph = lineage_graph(project, view.lineage, view.deployments)
    return view


class _Graph:
    """The boxes of a lineage picture as ``layout`` takes them."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.needs: dict[str, list[str]] = {}
        self.states: dict[str, str] = {}
        self.notes: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.labels: dict[str, str] = {}

    def add(self, key: str, label: str, state: str, note: str, link: str | None) -> None:
        self.order.append(key)
        self.states[key], self.notes[key], self.labels[key] = state, note, label
        if link:
            self.links[key] = link

    def dag(self) -> Dag:
        return layout(
            self.order,
            self.needs,
            self.states,
            notes=self.notes,
            links=self.links,
            labels=self.labels,
        )


def _input_link(project: str, item: LineageInput) -> str | None:
    if item.kind == "dataset":
        return f"/data?project={quote(project)}"
    if item.kind == "table":
        table = item.ref.partition("/")[2].partition("@")[0] or item.ref.partition("@")[0]
        return f"/data/{quote(project)}/tables/{quote(table)}"
    return None


def _inputs(graph: _Graph, project: str, items: list[LineageInput], prefix: str) -> list[str]:
    keys = []
    for i, item in enumerate(items):
        key = f"{prefix}{i}"
        ups = _inputs(graph, project, item.upstream, f"{key}.")
        graph.add(key, item.ref, "input", item.kind, _input_link(project, item))
        graph.needs[key] = ups
        keys.append(key)
    return keys


def lineage_graph(project: str, lineage: VersionLineage, deployments: list[Deployment]) -> Dag:
    """A version's lineage as a picture: what its run consumed (and what that was built
    from) → the run → the version → the deployments serving it, each box a link."""
    graph = _Graph()
    inputs = _inputs(graph, project, lineage.inputs, "in:")
    run, version = lineage.run, lineage.version
    run_page = f"/runs/{quote(project)}/{quote(run.id)}"
    graph.add("run", run.name, run.status.lower(), f"run, {run.status.lower()}", run_page)
    graph.needs["run"] = inputs
    aliases = " ".join(f"@{a}" for a in version.aliases)
    page = f"/models/{quote(project)}/{quote(version.model)}?version={version.version}"
    label = f"{version.model} {version.version}"
    note = f"version {aliases}".strip()
    graph.add("version", label, version.status.value.lower(), note, page)
    graph.needs["version"] = ["run"]
    for d in deployments:
        mine = [r for r in d.revisions if r.model == version.model and r.version == version.version]
        share = sum(d.traffic.get(r.number, 0) for r in mine)
        roles = ", ".join(sorted({r.role for r in mine}))
        key = f"deployment:{d.name}"
        page = f"/projects/{quote(project)}/deployments/{quote(d.name)}"
        graph.add(key, d.name, d.status.value, f"{roles} {share} %, {d.status.value}", page)
        graph.needs[key] = ["version"]
    return graph.dag()


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested signature as ``path → value`` lines, for a line-by-line diff."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key in sorted(value):
            out.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: "{}"}
    if isinstance(value, list):
        if all(isinstance(v, dict) and "name" in v for v in value):
            out = {}
            for item in value:
                rest = {k: v for k, v in item.items() if k != "name"}
                out.update(flatten(rest, f"{prefix}[{item['name']}]"))
            return out or {prefix: "[]"}
        return {prefix: repr(value)}
    return {prefix: str(value)}


@dataclass
class Side:
    """One version of a comparison."""

    version: ModelVersion
    run: Run
    gate: GateResult | None
    evaluation: StoredEvaluation | None
    signature: dict[str, str]


def _side(store: MetadataStore, project: str, name: str, number: int) -> Side:
    version = registry.get_version(store, project, name, number)
    run = tracking.get_run(store, project, version.run_id)
    logged = run_artifacts.list_models(store, project, version.run_id)
    signature = next((m.signature for m in logged if m.id == version.logged_model_id), {})
    results = gate.list_results(store, project, name, number, limit=1)
    evaluations = gate.list_evaluations(store, project, name, number)
    return Side(
        version=version,
        run=run,
        gate=results[0] if results else None,
        evaluation=evaluations[0] if evaluations else None,
        signature=flatten(signature),
    )


def _rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": k, "a": a.get(k), "b": b.get(k), "differs": a.get(k) != b.get(k)}
        for k in sorted(set(a) | set(b))
    ]


def gather_compare(store: MetadataStore, project: str, name: str, a: int, b: int) -> dict[str, Any]:
    """Two versions side by side: run metrics, evaluation metrics, params, gate, signature."""
    left, right = _side(store, project, name, a), _side(store, project, name, b)
    eval_a = left.evaluation.report.metrics if left.evaluation else {}
    eval_b = right.evaluation.report.metrics if right.evaluation else {}
    return {
        "left": left,
        "right": right,
        "metric_rows": _rows(left.run.metrics or {}, right.run.metrics or {}),
        "eval_rows": _rows(eval_a, eval_b),
        "param_rows": _rows(left.run.params or {}, right.run.params or {}),
        "signature_rows": _rows(left.signature, right.signature),
    }
