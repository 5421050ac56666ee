"""The deploy form (``/deploy``): pick a model of a project the viewer may change, then a
version or alias (each version with its gate verdict and evaluation metrics), and how to
serve it; a preview shows what would change before anything is written; the same form
changes an existing deployment (``/deploy?project=P&name=N``).

Create and update call the control plane as the API does (``control.create`` /
``control.update``, editor role); the preview is ``control.create(..., dry_run=True)`` for a
new deployment, and for a change the spec's fields before and after with the versions each
reference resolves to now. A spec the form makes is checked by ``DeploymentSpec`` first: a
bad one is the form again with the reason and a 4xx status, nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import pydantic
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from loopml import projects
from loopml.core.auth import Role
from loopml.core.deployments import Deployment, DeploymentSpec
from loopml.core.errors import LoopmlError, ValidationError
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.faces.context import MetadataStore
from loopml.portal.pages.deployments import page_url
from loopml.portal.viewer import (
    PageRoute,
    Viewer,
    ViewerDep,
    check_form,
    context_of,
    control_of,
    redirect,
    render,
)
from loopml.registry import gate
from loopml.registry import service as registry

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_PROJECTS = 200
MAX_MODELS = 200
"""Models listed per project in the picker."""
VERSIONS = 20
"""Newest versions shown with their gate verdicts."""
METRICS = 4
"""Evaluation metrics shown per version."""
ROLES = ("model", "canary", "shadow")


@dataclass
class DeployableVersion:
    """One version as the form lists it."""

    version: ModelVersion
    gate: bool | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Choices:
    """What the form offers."""

    models: list[tuple[str, str]] = field(default_factory=list)
    versions: list[DeployableVersion] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    current: Deployment | None = None


def _models(store: MetadataStore, viewer: Viewer) -> list[tuple[str, str]]:
    """(project, model) of every project the viewer may deploy in."""
    names = [p.name for p in projects.list_(store, limit=MAX_PROJECTS).items]
    found: list[tuple[str, str]] = []
    for project in names:
        if viewer.can(project, Role.EDITOR):
            page = registry.list_models(store, project, limit=MAX_MODELS)
            found += [(project, m.name) for m in page.items]
    return found


def _version_row(store: MetadataStore, project: str, version: ModelVersion) -> DeployableVersion:
    verdicts = gate.list_results(store, project, version.model, version.version, limit=1)
    evaluation = gate.get_evaluation(store, project, version.model, version.version)
    metrics: dict[str, float] = {}
    if evaluation is not None:
        report = evaluation.report
        ordered = sorted(report.metrics, key=lambda k: (k != report.primary_metric, k))
        metrics = {k: report.metrics[k] for k in ordered[:METRICS]}
    return DeployableVersion(version, verdicts[0].passed if verdicts else None, metrics)


def choices(
    store: MetadataStore, viewer: Viewer, project: str, model: str, current: Deployment | None
) -> Choices:
    """The models to pick from and, once one is picked, its versions and references."""
    made = Choices(models=_models(store, viewer), current=current)
    if not project or not model:
        return made
    registry.get_model(store, project, model)
    versions = registry.list_versions(store, project, model, limit=VERSIONS).items
    made.versions = [_version_row(store, project, v) for v in versions]
    aliases = sorted({a for v in versions for a in v.aliases})
    ready = [v.version for v in versions if v.status == VersionStatus.READY]
    made.refs = [f"{model}@{a}" for a in aliases] + [f"{model}/{n}" for n in ready] + [model]
    return made


def _text(form: Any, key: str) -> str:
    return str(form.get(key, "")).strip()


JUDGING = (
    "max_error_rate_increase",
    "max_latency_ratio",
    "latency_slack_ms",
    "max_quality_drop",
    "min_requests",
    "min_labels",
    "promote_after_s",
)
"""A canary's automatic judging fields besides ``auto`` (form fields ``canary_<name>``; an
empty one takes the server's ``canary`` setting)."""
JUDGING_FIELDS = [
    ("max_error_rate_increase", "Error-rate margin over the primary (share)", "any"),
    ("max_latency_ratio", "p95 latency margin (times the primary's)", "any"),
    ("latency_slack_ms", "Latency differences ignored under (ms)", "any"),
    ("max_quality_drop", "Accuracy or R² margin under the primary", "any"),
    ("min_requests", "Requests each revision needs first", "1"),
    ("min_labels", "Labels each needs to compare quality", "1"),
    ("promote_after_s", "Promoted when no worse after (s)", "any"),
]


def canary_fields(form: Any) -> dict[str, Any]:
    """A canary's model, share and judging settings as the form gives them."""
    fields: dict[str, Any] = {
        "model": _text(form, "other"),
        "percent": _text(form, "percent") or 10,
    }
    auto = _text(form, "canary_auto")
    if auto in ("true", "false"):
        fields["auto"] = auto == "true"
    for name in JUDGING:
        value = _text(form, f"canary_{name}")
        if value:
            fields[name] = value
    return fields


def spec_fields(form: Any) -> dict[str, Any]:
    """The spec the form asks for (unchecked: ``DeploymentSpec`` checks it)."""
    fields: dict[str, Any] = {
        "model": _text(form, "ref"),
        "min_replicas": _text(form, "min_replicas") or 1,
        "max_replicas": _text(form, "max_replicas") or 1,
        "resources": {
            "cpu": _text(form, "cpu") or "500m",
            "memory": _text(form, "memory") or "512Mi",
        },
        "scale_to_zero_after_s": _text(form, "scale_to_zero_after_s") or None,
        "target": _text(form, "target") or "local",
        "auth": _text(form, "auth") or "token",
        "canary": None,
        "shadow": None,
    }
    mode, other = _text(form, "mode"), _text(form, "other")
    if mode == "canary":
        fields["canary"] = canary_fields(form)
    elif mode == "shadow":
        fields["shadow"] = other
    return fields


def checked(fields: dict[str, Any]) -> DeploymentSpec:
    """The spec, or ``ValidationError`` saying every field that is wrong."""
    try:
        return DeploymentSpec.model_validate(fields)
    except pydantic.ValidationError as exc:
        reasons = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            reasons.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
        raise ValidationError(
            "the deployment is not valid: " + "; ".join(reasons), details={"field": "spec"}
        ) from None


def _flat(spec: DeploymentSpec | None) -> dict[str, Any]:
    if spec is None:
        return {}
    data = spec.model_dump(mode="json")
    resources = data.pop("resources")
    canary = data.pop("canary")
    data["cpu"], data["memory"] = resources["cpu"], resources["memory"]
    data["canary"] = _canary_line(canary) if canary else None
    return data


def _canary_line(canary: dict[str, Any]) -> str:
    """A canary in one line: model, share, and the judging settings it sets itself."""
    judged = [f"auto {'on' if canary['auto'] else 'off'}"] if canary.get("auto") is not None else []
    judged += [f"{k} {canary[k]}" for k in JUDGING if canary.get(k) is not None]
    line = f"{canary['model']} at {canary['percent']} %"
    return f"{line} ({', '.join(judged)})" if judged else line


def change_plan(
    store: MetadataStore, project: str, spec: DeploymentSpec, current: Deployment | None
) -> list[dict[str, Any]]:
    """Each spec field before and after, and the versions the references resolve to now."""
    before, after = _flat(current.spec if current else None), _flat(spec)
    rows = [
        {"field": k, "before": before.get(k), "after": v, "changed": before.get(k) != v}
        for k, v in after.items()
    ]
    refs = {"model": spec.model, "canary": spec.canary.model if spec.canary else None}
    refs["shadow"] = spec.shadow
    for role, ref in refs.items():
        if ref:
            found = registry.resolve_in_project(store, project, ref)
            rows.append(
                {
                    "field": f"{role} resolves to",
                    "before": None,
                    "after": f"{found.model}/{found.version}",
                    "changed": True,
                }
            )
    return rows


def _values(form: Any, current: Deployment | None) -> dict[str, Any]:
    """What the form's fields hold: what was posted, else the deployment's spec, else the
    defaults."""
    if form is not None:
        return {k: v for k, v in form.items() if k != "csrf_token"}
    values: dict[str, Any] = {"min_replicas": 1, "max_replicas": 1, "cpu": "500m"}
    values |= {"memory": "512Mi", "target": "local", "auth": "token", "mode": "none", "percent": 10}
    if current is not None:
        spec = current.spec
        values |= _flat(spec)
        values |= {"ref": spec.model, "name": current.name, "canary": None}
        values["scale_to_zero_after_s"] = spec.scale_to_zero_after_s or ""
        if spec.canary:
            canary = spec.canary
            values |= {"mode": "canary", "other": canary.model, "percent": canary.percent}
            if canary.auto is not None:
                values["canary_auto"] = "true" if canary.auto else "false"
            for name in JUDGING:
                value = getattr(canary, name)
                values[f"canary_{name}"] = "" if value is None else value
        elif spec.shadow:
            values |= {"mode": "shadow", "other": spec.shadow}
    return values


async def _form(
    request: Request,
    viewer: Viewer,
    project: str,
    model: str,
    name: str,
    *,
    form: Any = None,
    status_code: int = 200,
    **extra: Any,
) -> HTMLResponse:
    ctx = context_of(request)
    control = control_of(request)

    def read() -> Choices:
        current = control.get(project, name) if project and name else None
        picked = model or (current.spec.model.split("/")[0].split("@")[0] if current else "")
        return choices(ctx.store, viewer, project, picked, current)

    made = await anyio.to_thread.run_sync(read)
    current = made.current
    picked = model or (current.spec.model.split("/")[0].split("@")[0] if current else "")
    values = _values(form, current)
    judging = [values.get(f"canary_{n}") for n in (*JUDGING, "auto")]
    return render(
        request,
        "deploy.html",
        viewer,
        status_code=status_code,
        page="deploy",
        project=project,
        model=picked,
        name=name,
        made=made,
        updating=current is not None,
        values=values,
        judging_fields=JUDGING_FIELDS,
        judging_open=any(v not in (None, "") for v in judging),
        **extra,
    )


@router.get("/deploy")
async def deploy_page(
    request: Request,
    viewer: ViewerDep,
    project: str = "",
    model: str = "",
    name: str = "",
    choice: str = "",
) -> Response:
    """The deploy form: pick a model (``choice=P/M``), then how to serve it."""
    if choice:
        project, _, model = choice.partition("/")
    if project:
        viewer.require(project, Role.EDITOR)
    return await _form(request, viewer, project, model, name)


def _posted(form: Any) -> tuple[str, str, str, bool]:
    update = _text(form, "update") == "1"
    return _text(form, "project"), _text(form, "model"), _text(form, "name"), update


async def _plan(request: Request, viewer: Viewer, form: Any) -> list[dict[str, Any]]:
    """Check the posted form and work out what it would change (nothing written)."""
    project, _model, name, update = _posted(form)
    viewer.require(project, Role.EDITOR)
    spec = checked(spec_fields(form))
    ctx = context_of(request)
    control = control_of(request)

    def plan() -> list[dict[str, Any]]:
        if update:
            current = control.get(project, name)
            control.check(project, spec)
            return change_plan(ctx.store, project, spec, current)
        made = control.create(project, name, spec, actor=viewer.actor, dry_run=True)
        rows = change_plan(ctx.store, project, spec, None)
        return rows + [
            {"field": f"revision {n} traffic", "before": None, "after": f"{p} %", "changed": True}
            for n, p in sorted(made.traffic.items())
        ]

    return await anyio.to_thread.run_sync(plan)


@router.post("/portal/deploy/preview")
async def preview(request: Request, viewer: ViewerDep) -> Response:
    """The form again with what it would change; nothing is written."""
    form = await request.form()
    check_form(viewer, form)
    project, model, name, update = _posted(form)
    try:
        rows = await _plan(request, viewer, form)
    except LoopmlError as exc:
        return await _refused(request, viewer, form, exc)
    return await _form(
        request, viewer, project, model, name if update else "", form=form, plan=rows
    )


async def _refused(request: Request, viewer: Viewer, form: Any, exc: LoopmlError) -> Response:
    project, model, name, update = _posted(form)
    if exc.status >= 500 or not viewer.can(project, Role.EDITOR):
        raise exc
    return await _form(
        request,
        viewer,
        project,
        model,
        name if update else "",
        form=form,
        status_code=exc.status,
        message=exc.message,
    )


@router.post("/portal/deploy")
async def deploy(request: Request, viewer: ViewerDep) -> Response:
    """Create or change the deployment, then its page (303)."""
    form = await request.form()
    check_form(viewer, form)
    project, _model, name, update = _posted(form)
    viewer.require(project, Role.EDITOR)
    control = control_of(request)
    try:
        spec = checked(spec_fields(form))
        if update:
            changes = spec.model_dump(mode="json")
            await anyio.to_thread.run_sync(
                lambda: control.update(project, name, changes, actor=viewer.actor)
            )
        else:
            await anyio.to_thread.run_sync(
                lambda: control.create(project, name, spec, actor=viewer.actor)
            )
    except LoopmlError as exc:
        return await _refused(request, viewer, form, exc)
    return redirect(page_url(project, name))
