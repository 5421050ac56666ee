"""``loopml deploy`` and ``loopml deployments``: serve registered models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._context import project_option, state
from loopml.cli._delete import YES, deleting
from loopml.cli._output import (
    as_json,
    check_output,
    console,
    listing,
    output_option,
    table,
    when,
    wide_option,
)
from loopml.core.deployments import DeploymentRequest
from loopml.core.errors import ConfigurationError, LoopmlError, ValidationError

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.core.deployments import Canary, Deployment

app = typer.Typer(
    help="Deployments: status, revisions, logs, scale, rollback, delete.",
    no_args_is_help=True,
)

PROJECT = project_option("The project of the deployment.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")
NAME = typer.Argument(..., help="The deployment's name.")
_OUTPUTS = ("table", "json", "yaml")
_AUTH_HELP = "token (default) or none: whether predicting needs a token when auth is on."
_FEATURES_HELP = "A feature view whose online values complete each request (repeatable)."
_MISSING_HELP = "reject (422) or default (null) for an entity without fresh feature values."
_AUTO_HELP = (
    "Roll the canary back when it is worse than the primary, promote it when it is not after "
    "--promote-after seconds (each judging option left out takes the server's `canary` "
    "setting; docs/deployments.md)."
)
PROMOTE_AFTER = typer.Option(
    None,
    "--promote-after",
    min=0,
    max=30 * 86_400,
    help="--auto-canary: seconds the canary must be no worse before it is promoted "
    "[canary.promote_after_s: 3600].",
)
MIN_REQUESTS = typer.Option(
    None,
    "--min-requests",
    min=1,
    help="--auto-canary: requests each revision serves before any verdict "
    "[canary.min_requests: 100].",
)
MIN_LABELS = typer.Option(
    None,
    "--min-labels",
    min=1,
    help="--auto-canary: labels each revision needs before their quality is compared "
    "[canary.min_labels: 50].",
)
MAX_QUALITY_DROP = typer.Option(
    None,
    "--max-quality-drop",
    min=0,
    max=1,
    help="--auto-canary: the quality margin: rolled back when its accuracy (classifier) or "
    "R2 (regressor) is lower than the primary's by more [canary.max_quality_drop: 0.05].",
)
MAX_ERROR_INCREASE = typer.Option(
    None,
    "--max-error-increase",
    min=0,
    max=1,
    help="--auto-canary: rolled back when its error rate passes the primary's by more (a "
    "share) [canary.max_error_rate_increase: 0.02].",
)


def canary_policy(
    auto: bool,
    promote_after: float | None,
    min_requests: int | None,
    min_labels: int | None,
    max_quality_drop: float | None,
    max_error_increase: float | None,
) -> dict[str, Any] | None:
    """The canary's judging options as the API takes them (``None``: not judged).

    Raises:
        ValidationError: a judging option without ``--auto-canary``.
    """
    given = {
        "promote_after_s": promote_after,
        "min_requests": min_requests,
        "min_labels": min_labels,
        "max_quality_drop": max_quality_drop,
        "max_error_rate_increase": max_error_increase,
    }
    chosen = {k: v for k, v in given.items() if v is not None}
    if not auto:
        if chosen:
            flags = {
                "promote_after_s": "--promote-after",
                "min_requests": "--min-requests",
                "min_labels": "--min-labels",
                "max_quality_drop": "--max-quality-drop",
                "max_error_rate_increase": "--max-error-increase",
            }
            named = ", ".join(flags[k] for k in chosen)
            raise ValidationError(
                f"{named} judge an automatic canary: add --auto-canary (or leave them out)"
            )
        return None
    return {"auto": True, **chosen}


@dataclass(frozen=True)
class Preview:
    """How ``loopml deploy --dry-run`` renders a Kubernetes deployment's objects."""

    image: str
    platform_url: str
    namespace: str
    kserve: bool
    gateway_parent: str | None


def _given(**fields: Any) -> dict[str, Any]:
    """The fields given: an option left out takes the server's default."""
    return {k: v for k, v in fields.items() if v is not None}


# Typer reads each option from a parameter of the command function, so the command keeps its
# parameters; it builds the DeploymentRequest (``loopml.core.deployments``) that the client
# and the API's body share at once, checked as the API checks it, and hands only that on.
def deploy(
    ctx: typer.Context,
    model: str = typer.Argument(
        ..., help="MODEL/VERSION, MODEL@ALIAS (followed when it moves) or MODEL (newest READY)."
    ),
    name: str = typer.Option(..., "--name", "-n", help="The deployment's name ('churn-api')."),
    replicas: int | None = typer.Option(None, "--replicas", min=0, help="Sets --min and --max."),
    min_replicas: int | None = typer.Option(None, "--min", min=0, help="Replicas kept running."),
    max_replicas: int | None = typer.Option(None, "--max", min=1, help="Most replicas."),
    canary: str | None = typer.Option(None, "--canary", help="A second model reference."),
    percent: int = typer.Option(10, "--percent", min=1, max=99, help="The canary's share."),
    auto_canary: bool = typer.Option(False, "--auto-canary", help=_AUTO_HELP),
    promote_after: float | None = PROMOTE_AFTER,
    min_requests: int | None = MIN_REQUESTS,
    min_labels: int | None = MIN_LABELS,
    max_quality_drop: float | None = MAX_QUALITY_DROP,
    max_error_increase: float | None = MAX_ERROR_INCREASE,
    shadow: str | None = typer.Option(None, "--shadow", help="Gets a copy of every request."),
    scale_to_zero_after: int | None = typer.Option(
        None, "--scale-to-zero-after", min=10, help="Stop after this many idle seconds."
    ),
    cpu: str | None = typer.Option(None, "--cpu", help="Per replica, such as 500m."),
    memory: str | None = typer.Option(None, "--memory", help="Per replica, such as 512Mi."),
    target: str = typer.Option("local", "--target", help="local or kubernetes."),
    auth: str | None = typer.Option(None, "--auth", help=_AUTH_HELP),
    feature_views: list[str] = typer.Option([], "--features", help=_FEATURES_HELP),
    missing: str = typer.Option("reject", "--missing-features", help=_MISSING_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Resolve and print; create nothing."),
    output: str = typer.Option("table", "--output", "-o", help="table, json or yaml."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until it is ready."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for ready."),
    image: str = typer.Option(
        "loopml:latest", "--image", help="Kubernetes dry run: the image the pods run."
    ),
    platform_url: str | None = typer.Option(
        None, "--platform-url", help="Kubernetes dry run: the platform as pods reach it."
    ),
    namespace: str = typer.Option("default", "--namespace", help="Kubernetes dry run."),
    kserve: bool = typer.Option(False, "--kserve", help="Kubernetes dry run: KServe objects."),
    gateway_parent: str | None = typer.Option(
        None,
        "--gateway-parent",
        help="Kubernetes dry run: the Gateway (name or namespace/name) an HTTPRoute attaches to.",
    ),
    project: str = PROJECT,
) -> None:
    """Deploy a model: `loopml deploy churn@champion --name churn --replicas 2`."""
    if output not in _OUTPUTS:
        raise ValidationError(f"--output {output!r}: expected one of {list(_OUTPUTS)}")
    low, high = _replica_bounds(replicas, min_replicas, max_replicas, scale_to_zero_after)
    policy = canary_policy(
        auto_canary, promote_after, min_requests, min_labels, max_quality_drop, max_error_increase
    )
    if policy is not None and canary is None:
        raise ValidationError("--auto-canary judges a canary: give it with --canary MODEL")
    features = {"views": feature_views, "missing": missing} if feature_views else None
    request = DeploymentRequest.parse(
        _given(
            name=name,
            model=model,
            min_replicas=low,
            max_replicas=high,
            target=target,
            canary={"model": canary, "percent": percent, **(policy or {})} if canary else None,
            shadow=shadow,
            scale_to_zero_after_s=scale_to_zero_after,
            auth=auth,
            features=features,
            resources=_given(cpu=cpu, memory=memory) or None,
        )
    )
    with state(ctx).client() as client:
        if dry_run:
            deployment = client.deployments.create_from(request, dry_run=True, project=project)
            url = platform_url or client.url
            preview = Preview(image, url, namespace, kserve, gateway_parent)
            _print_preview(deployment, output, preview)
            return
        deployment = client.deployments.create_from(request, project=project)
        if wait:
            deployment = client.deployments.wait(name, timeout_s=timeout, project=project)
        _print(deployment, output, _auth_on(client) if output == "table" else None)
        if output == "table":
            from loopml.cli import _endpoints

            _endpoints.show(client, deployment, state(ctx).token())


def _replica_bounds(
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    scale_to_zero_after: int | None,
) -> tuple[int, int]:
    """``(min, max)`` replicas from ``--replicas`` or ``--min``/``--max``; scale-to-zero without
    an explicit minimum starts from 0."""
    if replicas is not None and (min_replicas is not None or max_replicas is not None):
        raise ValidationError("give --replicas, or --min and --max, not both")
    low = replicas if replicas is not None else (min_replicas if min_replicas is not None else 1)
    high = replicas if replicas is not None else max_replicas
    if scale_to_zero_after is not None and min_replicas is None and replicas is None:
        low = 0
    return low, max(high if high is not None else low, 1)


def _print_preview(deployment: Deployment, output: str, preview: Preview) -> None:
    if deployment.spec.target == "kubernetes" and output == "yaml":
        try:
            from loopml.deploy.targets import kubernetes
        except ImportError as exc:
            raise ConfigurationError(
                f"the Kubernetes target is not available in this install ({exc})"
            ) from exc
        manifests = kubernetes.render(
            deployment,
            image=preview.image,
            platform_url=preview.platform_url,
            namespace=preview.namespace,
            kserve=preview.kserve,
            gateway_parent=preview.gateway_parent,
        )
        print(kubernetes.to_yaml(manifests), end="")
        return
    _print(deployment, output)


def _canary_text(canary: Canary | None) -> str:
    if canary is None:
        return ""
    return f"{canary.model} {canary.percent}%" + (" (auto)" if canary.auto else "")


def _auth_on(client: Client) -> bool | None:
    """Whether the server checks tokens (None: it could not say); ``whoami`` answers 422
    when authentication is off."""
    try:
        client.whoami()
    except ValidationError as exc:
        return False if "authentication is off" in exc.message else None
    except LoopmlError:
        return None
    return True


def _print(deployment: Deployment, output: str, checked: bool | None = None) -> None:
    data = deployment.model_dump(mode="json")
    if output == "json":
        as_json(data)
    elif output == "yaml":
        import yaml  # type: ignore[import-untyped]

        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        _show(deployment, checked)


def _auth_text(auth: str, checked: bool | None) -> str:
    if auth == "token" and checked is False:
        return "token, once authentication is on (it is off on this server: no token is checked)"
    return auth


def _show(deployment: Deployment, checked: bool | None = None) -> None:
    spec = deployment.spec
    rows: list[tuple[str, Any]] = [
        ("name", deployment.name),
        ("project", deployment.project),
        ("model", spec.model),
        ("status", deployment.status.value),
        ("message", deployment.status_message),
        (
            "replicas",
            f"{deployment.replicas_ready} ready (min {spec.min_replicas}, max {spec.max_replicas})",
        ),
        ("canary", _canary_text(spec.canary)),
        ("shadow", spec.shadow or ""),
        (
            "scale to zero after",
            f"{spec.scale_to_zero_after_s} s" if spec.scale_to_zero_after_s else "",
        ),
        ("target", spec.target),
        ("auth", _auth_text(spec.auth, checked)),
        ("updated", when(deployment.updated_at)),
    ]
    table(None, ["field", "value"], rows)
    revisions = [
        (
            r.number,
            f"{r.model}/{r.version}",
            r.ref,
            deployment.role_now(r),
            f"{deployment.traffic[r.number]}%" if r.number in deployment.traffic else "",
            "yes" if r.number == deployment.shadow_revision else "",
            when(r.created_at),
        )
        for r in deployment.revisions
    ]
    table(
        "revisions",
        ["#", "version", "from", "role", "traffic", "shadow", "created"],
        rows=revisions,
    )


@app.command("list")
def list_deployments(
    ctx: typer.Context,
    project: str = PROJECT,
    all_projects: bool = typer.Option(
        False, "--all-projects", "-A", help="Every project's deployments."
    ),
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List a project's deployments (or every project's, with --all-projects)."""
    shape = check_output("json" if json_out else output, wide)
    with state(ctx).client() as client:
        projects = [p.name for p in client.projects.iter()] if all_projects else [project]
        items = [d for name in projects for d in client.deployments.iter(project=name)]
    rows = [
        (
            d.name,
            d.status.value,
            d.spec.model,
            d.project,
            d.replicas_ready,
            ", ".join(f"r{r}: {p}%" for r, p in sorted(d.traffic.items())),
            d.status_message,
        )
        for d in items
    ]
    columns = ["name", "status", "model", "project", "ready", "traffic", "message"]
    records = [d.model_dump(mode="json") for d in items]
    listing(columns, rows, shape, required=3 if not all_projects else 4, records=records)


@app.command("show")
def show(
    ctx: typer.Context, name: str = NAME, project: str = PROJECT, json_out: bool = JSON
) -> None:
    """Show a deployment: spec, status and revisions with their traffic."""
    with state(ctx).client() as client:
        deployment = client.deployments.get(name, project=project)
        checked = None if json_out else _auth_on(client)
    _print(deployment, "json" if json_out else "table", checked)


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: str = NAME,
    tail: int = typer.Option(100, "--tail", "-n", min=1, max=1000, help="Last N lines."),
    project: str = PROJECT,
) -> None:
    """Print the last lines its replicas (and their supervisor) wrote."""
    with state(ctx).client() as client:
        lines = client.deployments.logs(name, tail=tail, project=project)
    for line in lines:
        print(line)


@app.command("scale")
def scale(
    ctx: typer.Context,
    name: str = NAME,
    replicas: int | None = typer.Argument(None, min=0, help="The replica count."),
    min_replicas: int | None = typer.Option(None, "--min", min=0),
    max_replicas: int | None = typer.Option(None, "--max", min=1),
    project: str = PROJECT,
) -> None:
    """Set the replica count (or --min/--max)."""
    with state(ctx).client() as client:
        deployment = client.deployments.scale(
            name, replicas, min_replicas=min_replicas, max_replicas=max_replicas, project=project
        )
    spec = deployment.spec
    console.print(f"{name}: replicas {spec.min_replicas}..{spec.max_replicas}")


@app.command("update")
def update(
    ctx: typer.Context,
    name: str = NAME,
    model: str | None = typer.Option(None, "--model", help="A new model reference."),
    canary: str | None = typer.Option(None, "--canary", help="A canary model reference."),
    percent: int = typer.Option(10, "--percent", min=1, max=99, help="The canary's share."),
    no_canary: bool = typer.Option(False, "--no-canary", help="Remove the canary."),
    auto_canary: bool = typer.Option(False, "--auto-canary", help=_AUTO_HELP),
    promote_after: float | None = PROMOTE_AFTER,
    min_requests: int | None = MIN_REQUESTS,
    min_labels: int | None = MIN_LABELS,
    max_quality_drop: float | None = MAX_QUALITY_DROP,
    max_error_increase: float | None = MAX_ERROR_INCREASE,
    shadow: str | None = typer.Option(None, "--shadow", help="A shadow model reference."),
    no_shadow: bool = typer.Option(False, "--no-shadow", help="Remove the shadow."),
    auth: str | None = typer.Option(None, "--auth", help="token or none."),
    project: str = PROJECT,
) -> None:
    """Change what a deployment serves (a changed version rolls out without dropping requests)."""
    changes: dict[str, Any] = {}
    policy = canary_policy(
        auto_canary, promote_after, min_requests, min_labels, max_quality_drop, max_error_increase
    )
    if policy is not None and canary is None:
        raise ValidationError("--auto-canary judges a canary: give it with --canary MODEL")
    if canary is not None or no_canary:
        changes["canary"] = None if no_canary else canary
        changes["canary_percent"] = percent
        changes["canary_policy"] = policy
    if shadow is not None or no_shadow:
        changes["shadow"] = None if no_shadow else shadow
    with state(ctx).client() as client:
        deployment = client.deployments.update(
            name, model=model, auth=auth, project=project, **changes
        )
        checked = _auth_on(client)
    _print(deployment, "table", checked)


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str = NAME,
    revision: int = typer.Argument(..., min=1, help="The revision to serve again."),
    project: str = PROJECT,
) -> None:
    """Send all traffic to an earlier revision (the spec is pinned to its version)."""
    with state(ctx).client() as client:
        deployment = client.deployments.rollback(name, revision, project=project)
    console.print(f"{name}: all traffic to revision {revision} ({deployment.spec.model})")


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str = NAME,
    yes: bool = YES,
    project: str = PROJECT,
) -> None:
    """Delete a deployment and stop its replicas."""
    with deleting(
        ctx, yes, f"Delete deployment {name!r} and stop its replicas?", "deployment", name
    ) as client:
        client.deployments.delete(name, project=project)
