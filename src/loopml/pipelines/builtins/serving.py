"""Serving built-ins: ``deploy`` (through the platform's API) and ``batch_predict``.

``deploy`` runs in a worker's step process, not in the server that supervises the replicas,
so it acts through the API (``ctx.api_url``) like any client would. Its last act is the alias
move: a deployment follows ``<model>@<alias>``, so moving the alias is what rolls the new
version out (a rolling swap that drops no request), and every later promotion rolls out by
itself. A canary therefore has to run *before* the alias moves: the new version serves
``canary_percent`` of the traffic beside the current one as an automatic canary, judged by
the platform's one canary judge (``core.canary``, acted on by ``deploy.canary``: errors,
latency and live quality by the labels, with the step's margins over the server's
``canary`` settings) and promoted once no worse for ``canary_s`` seconds. The step waits
for that verdict: promoted, the alias moves; rolled back, the step fails with the judge's
reasons. The champion alias is still guarded by the gate: the API refuses the move (409)
for a version the gate did not pass.

``batch_predict`` scores a table in the step's process through ``scoring.batch`` (the serving
runtime, no HTTP), so its outputs are cached on the pinned model and table versions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loopml.core.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationError,
)
from loopml.pipelines._step import StepContext
from loopml.pipelines.builtins._common import model_version

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.core.deployments import Deployment
    from loopml.core.types import Event

STRATEGIES = ("direct", "canary")
_POLL_S = 0.25
_VERDICTS = ("deployment.canary.promoted", "deployment.canary.rolled_back")
_FIGURES = ("requests", "errors", "error_rate", "latency_p95_ms", "labels", "quality")


class CanaryFailedError(ConflictError):
    """The canary judge rolled the canary back (or gave no verdict in time)."""

    code = "canary_failed"


def _client(ctx: StepContext) -> Client:
    from loopml.client import Client

    if not ctx.api_url:
        raise ConfigurationError(
            "the deploy step acts through the platform's API, but the worker knows no API "
            "address: run `loopml worker` with LOOPML_CLIENT_URL set to the server"
        )
    # With authentication on: the worker's token (LOOPML_TOKEN of a `loopml worker`, the
    # server's own for the worker embedded in `loopml up`).
    token = ctx.settings.token.get_secret_value() if ctx.settings.token else None
    return Client(ctx.api_url, timeout=30.0, token=token)


def _find(client: Client, name: str, project: str) -> Deployment | None:
    try:
        return client.deployments.get(name, project=project)
    except NotFoundError:
        return None


def _share(deployment: Deployment, model: str, version: int) -> int:
    """The percent of traffic going to revisions that serve ``model/version``."""
    numbers = {r.number for r in deployment.revisions if (r.model, r.version) == (model, version)}
    return sum(pct for number, pct in deployment.traffic.items() if number in numbers)


def _revision(deployment: Deployment, model: str, version: int) -> int:
    """The newest revision serving ``model/version`` with traffic."""
    serving = [
        r.number
        for r in deployment.revisions
        if (r.model, r.version) == (model, version) and deployment.traffic.get(r.number, 0) > 0
    ]
    return max(serving)


def _wait_share(
    client: Client, name: str, project: str, model: str, version: int, share: int, deadline: float
) -> Deployment:
    """Poll until the deployment is ready with ``share`` percent on ``model/version``."""
    from loopml.core.deployments import DeploymentStatus

    while True:
        found = client.deployments.get(name, project=project)
        if found.status == DeploymentStatus.FAILED:
            raise ConflictError(
                f"deployment {name!r} failed: {found.status_message or 'no reason given'}",
                details={"deployment": name},
            )
        settled = (DeploymentStatus.READY, DeploymentStatus.SCALED_TO_ZERO)
        if found.status in settled and _share(found, model, version) == share:
            return found
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(
                f"deployment {name!r} did not serve {model}/{version} at {share}% in time "
                f"(status {found.status}, traffic {found.traffic})",
                details={"deployment": name, "status": found.status},
            )
        time.sleep(_POLL_S)


def _verdict(client: Client, project: str, name: str, revision: int) -> Event | None:
    """The judge's decision on canary ``revision`` of ``name``, if it was made."""
    for event in client.events.list(
        type="deployment.canary.*", project=project, newest_first=True, limit=100
    ).items:
        canary = event.payload.get("canary") or {}
        judged = event.type in _VERDICTS and event.subject == name
        if judged and canary.get("revision") == revision:
            return event
    return None


def _await_verdict(
    client: Client, project: str, name: str, model: str, revision: int, until: float
) -> Event | None:
    """Poll until the judge ended canary ``revision`` (its event), or ``None`` at ``until``."""
    from loopml.core.deployments import DeploymentStatus

    while True:
        found = client.deployments.get(name, project=project)
        if found.status == DeploymentStatus.FAILED:
            raise ConflictError(
                f"deployment {name!r} failed: {found.status_message or 'no reason given'}",
                details={"deployment": name},
            )
        if found.spec.canary is None or found.spec.canary.model != model:
            event = _verdict(client, project, name, revision)
            if event is not None:
                return event
            raise CanaryFailedError(
                f"the canary {model} on {name!r} was removed before the judge decided "
                "(changed by someone else?); the alias stays",
                details={"deployment": name},
            )
        if time.monotonic() > until:
            return None
        time.sleep(_POLL_S)


def _figures(event: Event | None) -> dict[str, float]:
    canary = event.payload.get("canary", {}) if event is not None else {}
    return {k: float(canary[k]) for k in _FIGURES if canary.get(k) is not None}


def _canary(
    ctx: StepContext,
    client: Client,
    deployment: str,
    model: str,
    version: int,
    *,
    percent: int,
    policy: dict[str, Any],
    until: float,
) -> dict[str, float]:
    """Serve ``model/version`` as an automatic canary and wait for the judge's verdict; the
    canary's figures when promoted, ``CanaryFailedError`` with the reasons when not."""
    ref = f"{model}/{version}"
    updated = client.deployments.update(
        deployment,
        canary=ref,
        canary_percent=percent,
        canary_policy={"auto": True, **policy},
        project=ctx.project,
    )
    revision = _revision(updated, model, version)
    ctx.log.info(
        "canary: %s serves %d%% of %s (revision %d), judged with %s",
        ref,
        percent,
        deployment,
        revision,
        policy,
    )
    event = None
    try:
        event = _await_verdict(client, ctx.project, deployment, ref, revision, until)
    finally:
        if event is None:
            # No verdict (timed out, or the step failed): the canary goes, the alias stays.
            client.deployments.update(deployment, canary=None, project=ctx.project)
            # Unless the judge decided in the meantime: a promotion already serves it.
            event = _verdict(client, ctx.project, deployment, revision)
    if event is None:
        raise CanaryFailedError(
            f"the canary of {ref} on {deployment!r} was rolled back: the judge gave no "
            f"verdict in time; it holds until each revision has served its min_requests, "
            "and judges only while the server's monitor runs (monitor.enabled)",
            details={"deployment": deployment, "revision": revision},
        )
    reasons = "; ".join(event.payload.get("reasons", []))
    ctx.log.info("canary: %s: %s", event.type, reasons)
    if event.type != "deployment.canary.promoted":
        raise CanaryFailedError(
            f"the canary of {ref} on {deployment!r} was rolled back: {reasons}",
            details={"deployment": deployment, **_figures(event)},
        )
    return _figures(event)


def _move_alias_or_restore(
    ctx: StepContext,
    client: Client,
    deployment: str,
    followed: str,
    model: str,
    alias: str,
    version: int,
) -> None:
    """Move ``alias`` to the promoted canary's version; when the registry refuses (the gate
    guards ``champion``), the deployment goes back to what it followed before the canary."""
    from loopml.core.errors import LoopmlError

    try:
        client.models.set_alias(model, alias, version, project=ctx.project)
    except LoopmlError:
        client.deployments.update(deployment, model=followed, project=ctx.project)
        ctx.log.info("%s@%s refused: %s follows %s again", model, alias, deployment, followed)
        raise
    ctx.log.info("%s@%s -> version %d", model, alias, version)


def _check(strategy: str, canary_percent: int) -> None:
    if strategy not in STRATEGIES:
        raise ValidationError(
            f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}",
            details={"field": "strategy"},
        )
    if not 1 <= canary_percent <= 99:
        raise ValidationError(f"canary_percent is 1 to 99, got {canary_percent}")


def _canary_policy(
    canary_s: float,
    min_requests: int = 0,
    min_labels: int = 0,
    max_quality_drop: float | None = None,
    max_error_increase: float | None = None,
) -> dict[str, Any]:
    """The canary's judging fields as a deployment takes them (``Canary`` in
    ``core.deployments``); a count of 0 or a margin of ``None`` is left to the server's
    ``canary`` setting."""
    if not 0 <= canary_s <= 3600:
        raise ValidationError(f"canary_s is 0 to 3600 seconds, got {canary_s}")
    for field, count in (("min_requests", min_requests), ("min_labels", min_labels)):
        if count < 0:
            raise ValidationError(f"{field} is 0 (the server's) or more, got {count}")
    margins = {"max_quality_drop": max_quality_drop, "max_error_increase": max_error_increase}
    for field, margin in margins.items():
        if margin is not None and not 0 <= margin <= 1:
            raise ValidationError(f"{field} is 0 to 1 (the server's when left out), got {margin}")
    given = {
        "promote_after_s": canary_s,
        "min_requests": min_requests or None,
        "min_labels": min_labels or None,
        "max_quality_drop": max_quality_drop,
        "max_error_rate_increase": max_error_increase,
    }
    return {k: v for k, v in given.items() if v is not None}


def deploy(
    ctx: StepContext,
    model: str,
    deployment: str,
    strategy: str = "direct",
    alias: str = "champion",
    canary_percent: int = 10,
    canary_s: float = 30.0,
    min_requests: int = 0,
    min_labels: int = 0,
    max_quality_drop: float | None = None,
    max_error_increase: float | None = None,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    scale_to_zero_after_s: int | None = None,
    wait_s: float = 300.0,
) -> dict[str, Any]:
    """Serve a model version on a deployment, directly or after a canary.

    The deployment is created when missing, following ``<model>@<alias>`` (or pinned to the
    version when ``alias`` is empty). A canary needs something already served to compare
    with: a deployment created by this step starts directly. A canary is promoted after
    ``canary_s`` seconds no worse; ``min_requests``, ``min_labels``, ``max_quality_drop``
    and ``max_error_increase`` are its judge's (``_canary_policy``), each left at 0 or out
    taking the server's ``canary`` setting.
    """
    from loopml.core.deployments import validate_deployment_name

    validate_deployment_name(deployment)
    _check(strategy, canary_percent)
    policy = _canary_policy(
        canary_s, min_requests, min_labels, max_quality_drop, max_error_increase
    )
    name, number = model_version(model)
    target = f"{name}@{alias}" if alias else f"{name}/{number}"
    deadline = time.monotonic() + wait_s
    figures: dict[str, float] = {}
    moved = False
    with _client(ctx) as client:
        existing = _find(client, deployment, ctx.project)
        if existing is not None and _share(existing, name, number) == 100:
            ctx.log.info("%s already serves %s/%d", deployment, name, number)
        elif strategy == "canary" and existing is not None:
            figures = _canary(
                ctx,
                client,
                deployment,
                name,
                number,
                percent=canary_percent,
                policy=policy,
                until=deadline + canary_s,
            )
            followed = existing.spec.model
            existing = client.deployments.get(deployment, project=ctx.project)
            if alias:
                _move_alias_or_restore(ctx, client, deployment, followed, name, alias, number)
                moved = True
        elif strategy == "canary":
            ctx.log.info("%s does not exist yet: nothing to canary against, deploying", deployment)
        if alias and not moved:
            client.models.set_alias(name, alias, number, project=ctx.project)
            ctx.log.info("%s@%s -> version %d", name, alias, number)
        if existing is None:
            client.deployments.create(
                deployment,
                target,
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                scale_to_zero_after_s=scale_to_zero_after_s,
                project=ctx.project,
            )
            ctx.log.info("created deployment %s following %s", deployment, target)
        elif existing.spec.model != target:
            # A promoted canary pins the deployment to the version: follow the alias again.
            client.deployments.update(deployment, model=target, project=ctx.project)
        found = _wait_share(client, deployment, ctx.project, name, number, 100, deadline)
    revision = _revision(found, name, number)
    ctx.log.info("%s serves %s/%d (revision %d)", deployment, name, number, revision)
    return {
        "deployment": deployment,
        "revision": revision,
        "model": model,
        "canary": figures,
    }


def batch_predict(
    ctx: StepContext,
    input: str,
    output: str,
    model: str | None = None,
    deployment: str | None = None,
    mode: str = "overwrite",
    chunk_rows: int = 50_000,
    on: str = "local",
) -> dict[str, Any]:
    """Score a table version with a model version (or a deployment's primary version) into
    ``output``; ``overwrite`` by default, so a rerun replaces rather than duplicates. ``on:
    ray`` scores the table's files on the worker's Ray cluster (or a Ray of the step's own).
    """
    from loopml.core.executors import check_place
    from loopml.scoring.batch import score_table
    from loopml.scoring.ray_batch import RayTarget

    check_place(on)

    result = score_table(
        ctx.store,
        ctx.artifacts,
        ctx.project,
        input=input,
        output=output,
        workdir=ctx.work_dir,
        actor=ctx.actor,
        model=model,
        deployment=deployment,
        mode=mode,
        chunk_rows=chunk_rows,
        lake_settings=ctx.settings.lake,
        progress=_progress_log(ctx),
        ray=RayTarget.of(ctx.settings) if on == "ray" else None,
    )
    ctx.log.info(
        "scored %d rows of %s with %s/%d into %s@%d",
        result.rows,
        input,
        result.model,
        result.version,
        result.output,
        result.output_version,
    )
    if result.ray_nodes:
        ctx.log.info(
            "rows scored per Ray node, by %d actors: %s", result.ray_actors, result.ray_nodes
        )
    return {
        "table": f"{result.output}@{result.output_version}",
        "rows": result.rows,
        "model": f"{result.model}/{result.version}",
    }


PROGRESS_EVERY_S = 10.0


def _progress_log(ctx: StepContext) -> Callable[[int], None]:
    """Logs the rows scored so far, at most every ``PROGRESS_EVERY_S``."""
    last = time.monotonic()

    def report(rows: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            ctx.log.info("scored %d rows so far", rows)

    return report
