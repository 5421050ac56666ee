"""``train_custom`` on a codeset: fetch the pinned version's files, make (or reuse) its
virtual environment, run its entry point on a run that records the version, and package a
model the code logged in MLflow's format (``loopml.train.codeset`` holds the parts)."""

from __future__ import annotations

from typing import Any

from loopml.core.codesets import parse_codeset_ref
from loopml.core.errors import UserCodeError, ValidationError
from loopml.core.mlflow_models import tracking_uri
from loopml.core.runs import EndStatus, LogBatch, RunInput
from loopml.pipelines._step import StepContext
from loopml.pipelines.builtins._common import metrics

_HEARTBEAT_MAX_S = 86_400  # the code's own MLflow client sends no heartbeats


def _fetch(ctx: StepContext, ref: str) -> tuple[Any, Any]:
    from loopml.storage.codetree import TreeLimits, extract_archive
    from loopml.store import codesets

    name, number = parse_codeset_ref(ref)
    with ctx.store.session() as session:
        version, key = codesets.version(session, ctx.project, name, number)
    with ctx.artifacts.open(key) as handle:
        data = handle.read()
    folder = ctx.work_dir / "code"
    limits = TreeLimits(ctx.settings.codesets.max_bytes, ctx.settings.codesets.max_files)
    extract_archive(data, folder, limits)
    return version, folder


def train_codeset(
    ctx: StepContext, ref: str, *, params: dict[str, Any] | None, experiment: str | None
) -> dict[str, Any]:
    """Run the codeset's ``main`` entry point with ``MLFLOW_TRACKING_URI`` set to loopml's
    MLflow API for the pipeline's project and ``MLFLOW_RUN_ID`` to a run made for it;
    outputs the run and its metrics."""
    from loopml.train import codeset as runner
    from loopml.train import tracking

    if ctx.api_url is None:
        raise ValidationError(
            "train_custom on a codeset needs the platform's API for the code's MLflow "
            "client: run it under `loopml up`, or give `loopml worker` LOOPML_CLIENT_URL"
        )
    version, folder = _fetch(ctx, ref)
    entry = runner.entry_point(folder, params)
    text = runner.requirements(folder, ctx.log.info)
    python = runner.environment(
        ctx.settings.home / "codeset-envs", text, ctx.log.info, runner.host_pip
    )
    batch = LogBatch(
        tags={"loopml.codeset": f"{version.codeset}@{version.version}"},
        inputs=[RunInput.model_validate(runner.codeset_input(version))],
    )
    run = tracking.start_run(
        ctx.store,
        ctx.project,
        experiment or version.codeset,
        heartbeat_timeout_s=_HEARTBEAT_MAX_S,
        actor=ctx.actor,
        batch=batch,
        create_experiment=True,
    )
    env = {
        "MLFLOW_TRACKING_URI": tracking_uri(ctx.api_url, ctx.project),
        "MLFLOW_RUN_ID": run.id,
        "LOOPML_RUN_ID": run.id,
        "LOOPML_CODESET": f"{version.codeset}@{version.version}",
    }
    if ctx.settings.token is not None:
        env["MLFLOW_TRACKING_TOKEN"] = ctx.settings.token.get_secret_value()
    ctx.log.info(
        "running %s of %s@%d: %s", entry.origin, version.codeset, version.version, entry.command
    )
    status = runner.run_entry(python, folder, entry.command, env=env)
    ended = tracking.get_run(ctx.store, ctx.project, run.id)
    if ended.status == "RUNNING":
        outcome: EndStatus = "FINISHED" if status == 0 else "FAILED"
        ended = tracking.end_run(ctx.store, ctx.project, run.id, outcome, actor=ctx.actor)
    if status != 0:
        raise UserCodeError(f"the codeset's entry point exited with status {status} (run {run.id})")
    source = _mlflow_model(ctx, run.id)
    if source is not None:
        # loopml's own API is at the server's root, not under the project's MLflow URI.
        client_env = {"LOOPML_CLIENT_URL": ctx.api_url}
        if "MLFLOW_TRACKING_TOKEN" in env:
            client_env["LOOPML_TOKEN"] = env["MLFLOW_TRACKING_TOKEN"]
        ctx.log.info("packaging the MLflow model %s of run %s for loopml", source, run.id)
        answer = runner.package_mlflow(
            python, folder, run.id, source, project=ctx.project, env=client_env
        )
        ctx.log.info("%s", answer)
    return {"run": run.id, "metrics": metrics(dict(ended.metrics or {}))}


def _mlflow_model(ctx: StepContext, run_id: str) -> str | None:
    """The model in MLflow's format the run logged, when it logged no loopml package: its
    newest READY MLflow 3 model (``models:/<id>``), else the first folder of its artifacts
    holding an ``MLmodel`` file (MLflow 2's ``log_model``); ``None`` when there is none."""
    from loopml.store import mlflow_models
    from loopml.train.tracking import artifacts as run_artifacts

    if run_artifacts.list_models(ctx.store, ctx.project, run_id):
        return None
    with ctx.store.session() as session:
        ids = mlflow_models.of_runs(session, [run_id])[run_id]
        found = [mlflow_models.get(session, ctx.project, i) for i in ids]
    ready = [m for m in found if m.status == "READY"]
    if ready:
        return f"models:/{max(ready, key=lambda m: m.created_at).id}"
    root = run_artifacts.run_root(ctx.store, ctx.project, run_id)
    folders = sorted(
        obj.key[len(root) + 1 : -len("/MLmodel")]
        for obj in ctx.artifacts.list(root)
        if obj.key.endswith("/MLmodel")
    )
    return folders[0] if folders else None
