"""The deployment page (``/projects/{project}/deployments/{name}``): status, revisions and traffic,
rollback and canary promotion, the endpoint URLs with snippets that work as pasted, usage
charts, replicas, drift, quality, alerts, the live logs tail and a try-it form.

The try-it form posts to the portal, which sends the prediction through the platform's own
app in-process (``httpx.ASGITransport``): the same path, gateway and serving-auth check a
client's request takes, with the viewer's session token as the bearer token when
authentication is on (the serving paths accept bearer tokens only, never the cookie). So it
works with authentication on and off, is counted and logged like any prediction, and needs
no script in the browser.
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from loopml.auth import sessions
from loopml.core.auth import Role
from loopml.core.clock import utcnow
from loopml.core.deployments import Deployment
from loopml.core.errors import LoopmlError, ValidationError
from loopml.core.logs import LEVELS, LogQuery
from loopml.packaging import Signature
from loopml.portal.pages._snippets import snippets
from loopml.portal.pages._usage_chart import (
    DEFAULT_PERIOD,
    PERIODS,
    UsageChart,
    stored_sizes,
    usage_chart,
)
from loopml.portal.pages.deployment_data import (
    ModelFacts,
    gather,
    listed_revisions,
    model_facts,
    serving_revision,
)
from loopml.portal.viewer import (
    PageRoute,
    Viewer,
    ViewerDep,
    check_form,
    context_of,
    control_of,
    read_only,
    redirect,
    render,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE = "/projects/{project}/deployments/{name}"
FORM = "/portal/deployments/{project}/{name}"
TAIL = 200
"""Log lines shown."""
TRY_TIMEOUT_S = 60.0


def page_url(project: str, name: str) -> str:
    """The deployment page's path."""
    return f"/projects/{project}/deployments/{name}"


def endpoints(base: str, deployment: Deployment) -> dict[str, str]:
    """The deployment's prediction URLs on this server."""
    root = f"{base.rstrip('/')}/projects/{deployment.project}/deployments/{deployment.name}"
    return {
        "predict": f"{root}/predict",
        "v2": f"{root}/v2/models/{deployment.name}/infer",
        "v2_metadata": f"{root}/v2/models/{deployment.name}",
    }


def needs_token(viewer: Viewer, deployment: Deployment) -> bool:
    """Whether a client must send a bearer token to the prediction paths."""
    return viewer.auth and deployment.spec.auth == "token"


def _chart_data(chart: UsageChart) -> str:
    """The usage chart as JSON for a ``<script type="application/json">`` (``</`` cannot
    end the element: ``<`` is escaped)."""
    return json.dumps(chart.as_json()).replace("<", "\\u003c")


async def _page(
    request: Request,
    viewer: Viewer,
    project: str,
    name: str,
    status_code: int = 200,
    **extra: Any,
) -> HTMLResponse:
    ctx = context_of(request)
    control = control_of(request)
    query = _log_query(request.query_params.get("grep"), request.query_params.get("level"))
    detail = await read_only(
        request, lambda: gather(ctx.store, ctx.artifacts, control, ctx.settings, project, name)
    )
    lines = await anyio.to_thread.run_sync(lambda: control.logs(project, name, TAIL, query))
    period = request.query_params.get("period") or DEFAULT_PERIOD
    watch = ctx.settings.monitor
    pending_s = watch.lag_s + watch.interval_s
    sizes = stored_sizes(watch)
    chart = await anyio.to_thread.run_sync(
        lambda: usage_chart(ctx.store, project, name, sizes, period, utcnow(), pending_s)
    )
    urls = endpoints(str(request.base_url), detail.deployment)
    token = needs_token(viewer, detail.deployment)
    example = detail.facts.example
    # The gateway completes rows from feature views on /predict only: no V2 snippet then.
    v2 = detail.deployment.spec.features is None
    targets = urls if v2 else {"predict": urls["predict"]}
    code = None
    if example is not None:
        code = snippets(targets, example, detail.facts.signature, token)
    values = extra.pop("values", None) or example or {}
    return render(
        request,
        "deployment.html",
        viewer,
        status_code=status_code,
        page="deployments",
        d=detail.deployment,
        detail=detail,
        revisions=listed_revisions(detail, every=request.query_params.get("revisions") == "all"),
        urls=urls,
        token=token,
        code=code,
        v2=v2,
        chart=_chart_data(chart),
        usage=chart,
        periods=PERIODS,
        lines=lines,
        query=query,
        levels=LEVELS,
        editor=viewer.can(project, Role.EDITOR),
        values=values,
        **extra,
    )


def _log_query(grep: str | None, level: str | None) -> LogQuery:
    return LogQuery(grep=grep or None, level=level or None)


@router.get(PAGE)
async def deployment_page(request: Request, viewer: ViewerDep, project: str, name: str) -> Response:
    """The deployment page."""
    viewer.require(project)
    return await _page(request, viewer, project, name)


@router.get(PAGE + "/logs")
async def logs_fragment(
    request: Request,
    viewer: ViewerDep,
    project: str,
    name: str,
    grep: str = "",
    level: str = "",
) -> Response:
    """The logs tail as an HTML fragment (polled by the page every second)."""
    viewer.require(project)
    control = control_of(request)
    try:
        query = _log_query(grep, level)
        lines = await anyio.to_thread.run_sync(lambda: control.logs(project, name, TAIL, query))
    except ValidationError as exc:
        return render(request, "_logs.html", viewer, status_code=exc.status, error=exc.message)
    return render(request, "_logs.html", viewer, lines=lines)


@router.post(FORM + "/rollback")
async def rollback(request: Request, viewer: ViewerDep, project: str, name: str) -> Response:
    """Send all traffic to the chosen revision (editor, as the API's rollback)."""
    form = await request.form()
    check_form(viewer, form)
    viewer.require(project, Role.EDITOR)
    raw = str(form.get("revision", ""))
    if not raw.isdigit():
        raise ValidationError("pick the revision to roll back to", details={"field": "revision"})
    control = control_of(request)
    await anyio.to_thread.run_sync(
        lambda: control.rollback(project, name, int(raw), actor=viewer.actor)
    )
    return redirect(page_url(project, name))


@router.post(FORM + "/promote")
async def promote(request: Request, viewer: ViewerDep, project: str, name: str) -> Response:
    """Make the canary the primary (its reference becomes the spec's model), or drop it
    (``action=drop``): an update of the spec, as ``PATCH .../deployments/{name}`` would."""
    form = await request.form()
    check_form(viewer, form)
    viewer.require(project, Role.EDITOR)
    control = control_of(request)
    current = await anyio.to_thread.run_sync(lambda: control.get(project, name))
    canary = current.spec.canary
    if canary is None:
        raise ValidationError(f"deployment {name!r} has no canary", details={"field": "canary"})
    changes: dict[str, Any] = {"canary": None}
    if form.get("action") != "drop":
        changes["model"] = canary.model
    await anyio.to_thread.run_sync(
        lambda: control.update(project, name, changes, actor=viewer.actor)
    )
    return redirect(page_url(project, name))


def typed_row(signature: Signature, form: Any) -> dict[str, Any]:
    """The try-it form's fields as a row typed by the signature.

    Raises:
        ValidationError: a value that is not of its column's type.
    """
    row: dict[str, Any] = {}
    for column in signature.inputs:
        raw = str(form.get(f"col:{column.name}", "")).strip()
        try:
            if column.type == "float":
                row[column.name] = float(raw)
            elif column.type == "integer":
                row[column.name] = int(raw)
            elif column.type == "boolean":
                row[column.name] = raw.lower() in ("true", "1", "on", "yes")
            else:
                row[column.name] = raw
        except ValueError:
            raise ValidationError(
                f"column {column.name!r} takes a {column.type} value, not {raw[:40]!r}",
                details={"field": column.name},
            ) from None
    return row


async def predict_in_process(
    request: Request, viewer: Viewer, deployment: Deployment, row: dict[str, Any]
) -> tuple[int, Any]:
    """POST ``row`` to the deployment's ``/predict`` through the app itself (see the module
    docstring): the answer's status and body."""
    headers = {"content-type": "application/json"}
    session = request.cookies.get(sessions.SESSION_COOKIE)
    if viewer.auth and session:
        headers["authorization"] = f"Bearer {session}"
    base = str(request.base_url).rstrip("/")
    path = f"/projects/{deployment.project}/deployments/{deployment.name}/predict"
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        answer = await client.post(
            path, json={"instances": [row]}, headers=headers, timeout=TRY_TIMEOUT_S
        )
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, answer.text


@router.get(FORM + "/try")
async def try_it_again(viewer: ViewerDep, project: str, name: str) -> Response:
    """A reload of the try-it answer's page (its address is the form's): the deployment
    page at the form, as a reload of any page shows that page (not a 405)."""
    viewer.require(project)
    return redirect(page_url(project, name) + "#try-h")


@router.post(FORM + "/try")
async def try_it(request: Request, viewer: ViewerDep, project: str, name: str) -> Response:
    """Predict one row from the try-it form; the page again, with the answer."""
    form = await request.form()
    check_form(viewer, form)
    viewer.require(project)
    ctx = context_of(request)
    control = control_of(request)

    def read() -> tuple[Deployment, ModelFacts]:
        deployment = control.get(project, name)
        serving = serving_revision(deployment)
        if serving is None:
            return deployment, ModelFacts()
        facts = model_facts(ctx.store, ctx.artifacts, project, serving.model, serving.version)
        return deployment, facts

    deployment, facts = await anyio.to_thread.run_sync(read)
    signature = facts.signature
    if signature is None:
        raise ValidationError("the served version has no signature to build a row from")
    try:
        row = typed_row(signature, form)
    except LoopmlError as exc:
        values = {c.name: form.get(f"col:{c.name}", "") for c in signature.inputs}
        return await _page(
            request, viewer, project, name, exc.status, try_error=exc.message, values=values
        )
    status, body = await predict_in_process(request, viewer, deployment, row)
    tried = {"status": status, "body": json.dumps(body, indent=2, default=str)}
    # A request the replica refused (422: a value it cannot take) is the caller's to fix:
    # it stays a 4xx with the replica's message; only a failed server is a bad gateway.
    code = 200 if status < 400 else status if status < 500 else 502
    return await _page(request, viewer, project, name, code, tried=tried, values=row)
