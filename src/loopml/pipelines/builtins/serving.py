"""Serving built-ins: ``deploy`` (through the platform's API) and ``batch_predict``.

``deploy`` runs in a worker's step process, not in the server that supervises the replicas,
so it acts through the API (``ctx.api_url``) like any client would. Its last act is the alias
move: a deployment follows ``<model>@<alias>``, so moving the alias is what rolls the new
version out (a rolling swap that drops no request), and every later promotion rolls out by
itself. A canary therefore has to run *before* the alias moves: the new version serves
``canary_percent`` of the traffic beside the current one for ``canary_s`` seconds, its 5xx
answers are counted from the gateway's metrics, and only then does the alias move (or the
canary is removed and the step fails with the numbers). The champion alias is still
guarded by the gate: the API refuses the move (409) for a version the gate did not pass.

``batch_predict`` scores a table in the step's process through ``serve.batch`` (the serving
runtime, no HTTP), so its outputs are cached on the pinned model and table versions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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

STRATEGIES = ("direct", "canary")
_POLL_S = 0.25
_WATCH_POLL_S = 1.0


class CanaryFailedError(ConflictError):
    """The canary answered too many requests with errors; it was rolled back."""

    code = "canary_failed"


@dataclass(frozen=True)
class CanaryStats:
    """What the gateway counted for the canary revision while it was watched."""

    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_metrics(self) -> dict[str, float]:
        return {
            "requests": float(self.requests),
            "errors": float(self.errors),
            "error_rate": self.error_rate,
        }


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


def _gateway_counts(client: Client, project: str, name: str, revision: int) -> CanaryStats:
    """Requests and 5xx answers the gateway counted for one revision of a deployment."""
    from prometheus_client.parser import text_string_to_metric_families

    text = client._http.request("GET", "/metrics").text
    requests = errors = 0
    for family in text_string_to_metric_families(text):
        if family.name != "loopml_gateway_requests":
            continue
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total"):
                continue
            if (labels.get("project"), labels.get("deployment")) != (project, name):
                continue
            if labels.get("revision") != str(revision):
                continue
            count = int(sample.value)
            requests += count
            if labels.get("status", "").startswith("5"):
                errors += count
    return CanaryStats(requests, errors)


def _watch(
    ctx: StepContext,
    client: Client,
    name: str,
    revision: int,
    *,
    canary_s: float,
    max_error_rate: float,
    min_requests: int,
) -> CanaryStats:
    """Count the canary's answers for ``canary_s`` seconds; stop early once its errors are
    over the budget whatever the rest of the window brings."""
    start = _gateway_counts(client, ctx.project, name, revision)
    until = time.monotonic() + canary_s
    while True:
        now = _gateway_counts(client, ctx.project, name, revision)
        stats = CanaryStats(now.requests - start.requests, now.errors - start.errors)
        settled = stats.requests >= max(min_requests, 1) and stats.error_rate > max_error_rate
        if settled or time.monotonic() >= until:
            return stats
        time.sleep(min(_WATCH_POLL_S, max(0.0, until - time.monotonic())))


def _canary(
    ctx: StepContext,
    client: Client,
    deployment: str,
    model: str,
    version: int,
    *,
    percent: int,
    canary_s: float,
    max_error_rate: float,
    min_requests: int,
    deadline: float,
) -> CanaryStats:
    """Serve ``model/version`` as the canary, watch it, and remove it; raise when it failed
    its error budget (or drew fewer than ``min_requests`` requests)."""
    client.deployments.update(
        deployment, canary=f"{model}/{version}", canary_percent=percent, project=ctx.project
    )
    try:
        found = _wait_share(client, deployment, ctx.project, model, version, percent, deadline)
        revision = _revision(found, model, version)
        ctx.log.info(
            "canary: %s/%d serves %d%% of %s (revision %d); watching for %g s",
            model,
            version,
            percent,
            deployment,
            revision,
            canary_s,
        )
        stats = _watch(
            ctx,
            client,
            deployment,
            revision,
            canary_s=canary_s,
            max_error_rate=max_error_rate,
            min_requests=min_requests,
        )
    finally:
        # Going full and rolling back both start from no canary: the alias move (or
        # nothing) decides what the primary serves next.
        client.deployments.update(deployment, canary=None, project=ctx.project)
    ctx.log.info(
        "canary: %d requests, %d errors (%.2f%%, budget %.2f%%)",
        stats.requests,
        stats.errors,
        100 * stats.error_rate,
        100 * max_error_rate,
    )
    if stats.requests < min_requests or stats.error_rate > max_error_rate:
        why = (
            f"{stats.errors} of {stats.requests} requests failed ({stats.error_rate:.1%}, "
            f"over the budget of {max_error_rate:.1%})"
            if stats.error_rate > max_error_rate
            else f"only {stats.requests} requests reached it in {canary_s:g} s "
            f"(min_requests {min_requests})"
        )
        raise CanaryFailedError(
            f"the canary of {model}/{version} on {deployment!r} was rolled back: {why}",
            details={"deployment": deployment, **stats.as_metrics()},
        )
    return stats


def _check(strategy: str, canary_percent: int, canary_s: float, max_error_rate: float) -> None:
    if strategy not in STRATEGIES:
        raise ValidationError(
            f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}",
            details={"field": "strategy"},
        )
    if not 1 <= canary_percent <= 99:
        raise ValidationError(f"canary_percent is 1 to 99, got {canary_percent}")
    if not 0 <= canary_s <= 3600:
        raise ValidationError(f"canary_s is 0 to 3600 seconds, got {canary_s}")
    if not 0 <= max_error_rate <= 1:
        raise ValidationError(f"max_error_rate is a fraction from 0 to 1, got {max_error_rate}")


def deploy(
    ctx: StepContext,
    model: str,
    deployment: str,
    strategy: str = "direct",
    alias: str = "champion",
    canary_percent: int = 10,
    canary_s: float = 30.0,
    max_error_rate: float = 0.01,
    min_requests: int = 0,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    scale_to_zero_after_s: int | None = None,
    wait_s: float = 300.0,
) -> dict[str, Any]:
    """Serve a model version on a deployment, directly or after a canary.

    The deployment is created when missing, following ``<model>@<alias>`` (or pinned to the
    version when ``alias`` is empty). A canary needs something already served to compare
    with: a deployment created by this step starts directly.
    """
    from loopml.core.deployments import validate_deployment_name

    validate_deployment_name(deployment)
    _check(strategy, canary_percent, canary_s, max_error_rate)
    name, number = model_version(model)
    target = f"{name}@{alias}" if alias else f"{name}/{number}"
    deadline = time.monotonic() + wait_s
    stats = CanaryStats(0, 0)
    with _client(ctx) as client:
        existing = _find(client, deployment, ctx.project)
        if existing is not None and _share(existing, name, number) == 100:
            ctx.log.info("%s already serves %s/%d", deployment, name, number)
        elif strategy == "canary" and existing is not None:
            stats = _canary(
                ctx,
                client,
                deployment,
                name,
                number,
                percent=canary_percent,
                canary_s=canary_s,
                max_error_rate=max_error_rate,
                min_requests=min_requests,
                deadline=deadline,
            )
        elif strategy == "canary":
            ctx.log.info("%s does not exist yet: nothing to canary against, deploying", deployment)
        if alias:
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
            client.deployments.update(deployment, model=target, project=ctx.project)
        found = _wait_share(client, deployment, ctx.project, name, number, 100, deadline)
    revision = _revision(found, name, number)
    ctx.log.info("%s serves %s/%d (revision %d)", deployment, name, number, revision)
    return {
        "deployment": deployment,
        "revision": revision,
        "model": model,
        "canary": stats.as_metrics() if strategy == "canary" else {},
    }


def batch_predict(
    ctx: StepContext,
    input: str,
    output: str,
    model: str | None = None,
    deployment: str | None = None,
    mode: str = "overwrite",
    chunk_rows: int = 50_000,
) -> dict[str, Any]:
    """Score a table version with a model version (or a deployment's primary version) into
    ``output``; ``overwrite`` by default, so a rerun replaces rather than duplicates."""
    from loopml.predictions.batch import score_table

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
    return {
        "table": f"{result.output}@{result.output_version}",
        "rows": result.rows,
        "model": f"{result.model}/{result.version}",
    }
