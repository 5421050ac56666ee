"""Registry built-ins: ``register``, ``evaluate``, ``gate`` and ``promote``."""

from __future__ import annotations

from typing import Any

from loopml.core.errors import ConflictError, GateRequiredError
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.pipelines._step import StepContext
from loopml.pipelines.builtins._common import metrics, model_version


def _registered_from(ctx: StepContext, model: str, run: str) -> ModelVersion | None:
    """A READY version of ``model`` an earlier attempt registered from ``run``, if any."""
    from loopml.core.errors import NotFoundError
    from loopml.store import model_versions

    try:
        with ctx.store.session() as session:
            page = model_versions.list_(
                session, ctx.project, model, status=VersionStatus.READY, limit=100
            )
    except NotFoundError:
        return None
    return next((v for v in page.items if v.run_id == run), None)


def _logged_path(ctx: StepContext, run: str) -> str:
    """``model``, or the path of the run's only logged model when that is elsewhere (the
    ``loopml-model`` a codeset's MLflow model was packaged at)."""
    from loopml.train.tracking import artifacts as run_artifacts

    paths = [m.path for m in run_artifacts.list_models(ctx.store, ctx.project, run)]
    return paths[0] if len(paths) == 1 else "model"


def register(
    ctx: StepContext, run: str, model: str, description: str = "", path: str | None = None
) -> dict[str, Any]:
    """Register the model the run logged at ``path`` as the next version of ``model``
    (by default at ``model``, or wherever the run's only logged model is).

    A retry whose earlier attempt already registered this run reuses that version, so a
    crash between registering and recording the result never registers twice.
    """
    from loopml.registry import register_version

    found = _registered_from(ctx, model, run)
    if found is not None:
        ctx.log.info("run %s is already version %d of %s: reused", run, found.version, model)
        return {"model": f"{model}/{found.version}"}
    version = register_version(
        ctx.store,
        ctx.artifacts,
        project=ctx.project,
        model_name=model,
        run_id=run,
        path=path or _logged_path(ctx, run),
        description=description,
        actor=ctx.actor,
    )
    if version.status != VersionStatus.READY:
        raise ConflictError(
            f"version {version.version} of {model!r} failed registration: {version.status_message}",
            details={"model": model, "version": version.version},
        )
    return {"model": f"{model}/{version.version}"}


def evaluate(
    ctx: StepContext, model: str, dataset: str | None = None, target: str | None = None
) -> dict[str, Any]:
    """Score the version on a frozen eval set (by default the one it trained on)."""
    from loopml.registry.evaluate import evaluate_version

    name, number = model_version(model)
    stored = evaluate_version(
        ctx.store,
        ctx.artifacts,
        ctx.project,
        name,
        number,
        actor=ctx.actor,
        dataset=dataset,
        target=target,
    )
    report = stored.report
    ctx.log.info("%s on %s: %s", model, report.dataset, report.metrics)
    return {"model": model, "metrics": metrics(report.metrics), "eval_hash": report.eval_hash}


def gate(
    ctx: StepContext,
    model: str,
    eval_hash: str | None = None,
    fail: bool = False,
    min_delta: float | None = None,
) -> dict[str, Any]:
    """Judge the version by its model's policy; the verdict is recorded either way. With
    ``min_delta``, beating the champion takes at least that margin (a tie fails)."""
    from loopml.registry.evaluate import champion_scorer
    from loopml.registry.gate import judge_version

    name, number = model_version(model)
    verdict = judge_version(
        ctx.store,
        ctx.project,
        name,
        number,
        actor=ctx.actor,
        eval_hash=eval_hash,
        score_champion=champion_scorer(ctx.store, ctx.artifacts, ctx.project, actor=ctx.actor),
        min_delta=min_delta,
    )
    for rule in verdict.rules:
        ctx.log.info(
            "rule %s on %s: %s", rule.rule, rule.metric, "passed" if rule.passed else "failed"
        )
    ctx.log.info("gate %s: %s", "passed" if verdict.passed else "failed", verdict.summary)
    if not verdict.passed and fail:
        raise GateRequiredError(
            f"the gate refused {model}: {verdict.summary}",
            details={"model": name, "version": number},
        )
    return {"model": model, "passed": verdict.passed, "summary": verdict.summary}


def promote(ctx: StepContext, model: str, alias: str = "champion") -> dict[str, Any]:
    """Point ``alias`` at the version; ``champion`` only moves to a version the gate passed
    (``GateRequiredError`` otherwise, which fails the step without retries)."""
    from loopml.registry import set_alias

    name, number = model_version(model)
    set_alias(ctx.store, ctx.project, name, alias, number, actor=ctx.actor)
    ctx.log.info("%s@%s -> version %d", name, alias, number)
    return {"model": model, "alias": alias}
