"""MLflow's model registry operations as calls into loopml's registry (``registry`` and its
records' services, ``registry.service``): one function per endpoint.

A version is registered from a model *loopml* packaged (ONNX or skops, with a manifest whose
hash the run recorded). An MLflow-format model (an ``MLmodel`` file beside a pickle) is
accepted as a PACKAGING version (``PENDING_REGISTRATION`` to MLflow's client, which waits on
it) and packaged by the app's sandboxed converter (``registry.mlflow_packaging``): the
server's own process never loads a client's pickle. Setting an alias
goes through ``registry.set_alias`` exactly like ``loopml models promote``: ``champion`` moves
only to a version whose latest gate verdict passed, with no way to force it from MLflow.

``get-download-uri`` (what ``mlflow.pyfunc.load_model("models:/name@alias")`` asks for) points
at the MLflow-format model a version was packaged from by ``loopml runs package-mlflow`` (the
run's folder, or the MLflow 3 logged model), so MLflow's client downloads the user's own model
and loads it with its own flavour, on the client's side; a version with no such source (a
package loopml trained) is refused with a message naming what to use instead.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from loopml import registry
from loopml.api.mlflow import convert
from loopml.api.mlflow.errors import MlflowApiError
from loopml.api.mlflow.schemas import RegistrySearch, StageBody
from loopml.core import layout
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.keys import join_key, validate_key
from loopml.core.mlflow_filter import parse_mlflow_filter, parse_mlflow_order
from loopml.core.mlflow_models import parse_stage
from loopml.core.registry import ModelVersion, RegisteredModel, VersionStatus
from loopml.core.runs import LoggedModel
from loopml.faces.context import AppContext
from loopml.registry import mlflow_packaging, service

MAX_PAGE = 1000
_RUNS_SOURCE = re.compile(r"^runs:/([0-9a-f]{32})/(.+)$")
_ARTIFACTS_SOURCE = re.compile(r"^mlflow-artifacts:/+runs/([0-9a-f]{32})/(.+)$")
_MLFLOW_MODEL_SOURCE = re.compile(r"^(mlflow-artifacts:/+models/|models:/)([0-9a-f]{32})/?$")
# A registered version, as ``copy_model_version`` names its source.
_VERSION_SOURCE = re.compile(r"^models:/([^/@]{1,200})/([0-9]{1,9})$")
_NO_PACKAGER = (
    "this server packages no MLflow-format model (MLmodel and a pickle); package it on your "
    "machine with `loopml runs package-mlflow <run_id>` and register runs:/<run_id>/loopml-model"
)


@dataclass(frozen=True)
class _MlflowFormat:
    """An MLflow-format model a registration names: its run, its folder in the artifact
    store, and the source as MLflow names it (a folder of the run, or ``models:/<id>``)."""

    run_id: str
    prefix: str
    source: str


def _source(ctx: AppContext, version: ModelVersion) -> str:
    logged = service.package_location(ctx.store, version.logged_model_id)
    return f"{convert.run_artifact_uri(logged.run_id)}/{logged.path}"


def _version_json(ctx: AppContext, version: ModelVersion) -> dict[str, Any]:
    return convert.model_version(version, _source(ctx, version))


def _versions_json(ctx: AppContext, versions: list[ModelVersion]) -> list[dict[str, Any]]:
    """Many versions at once, their sources looked up in one query."""
    sources = service.package_sources(ctx.store, [v.logged_model_id for v in versions])
    out = []
    for version in versions:
        found = sources.get(version.logged_model_id)
        if found is None:
            out.append(_version_json(ctx, version))  # its own lookup says what is missing
            continue
        run_id, path = found
        source = f"{convert.run_artifact_uri(run_id)}/{path}"
        out.append(convert.model_version(version, source))
    return out


def _number(version: str | int) -> int:
    try:
        return int(version)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"invalid version {str(version)[:20]!r}: expected a number") from exc


def create_model(
    ctx: AppContext, project: str, name: str, tags: dict[str, str], description: str, actor: str
) -> dict[str, Any]:
    """``registered-models/create``."""
    model = service.create_model(
        ctx.store, project, name, description=description, tags=tags, actor=actor
    )
    return {"registered_model": convert.registered_model(model)}


def get_model(ctx: AppContext, project: str, name: str) -> dict[str, Any]:
    """``registered-models/get``, with ``latest_versions`` as MLflow gives them: the version
    in each stage and the newest in none (``registry.latest_versions_of``)."""
    return {"registered_model": _models_json(ctx, [service.get_model(ctx.store, project, name)])[0]}


def _models_json(ctx: AppContext, models: list[RegisteredModel]) -> list[dict[str, Any]]:
    latest = registry.latest_versions_of(ctx.store, models)
    every = [v for m in models for v in latest[m.name]]
    shown = iter(_versions_json(ctx, every))
    out = []
    for model in models:
        body = convert.registered_model(model)
        body["latest_versions"] = [next(shown) for _ in latest[model.name]]
        out.append(body)
    return out


def update_model(
    ctx: AppContext, project: str, name: str, description: str, actor: str
) -> dict[str, Any]:
    """``registered-models/update``: the description."""
    model = service.update_model(ctx.store, project, name, description=description, actor=actor)
    return {"registered_model": convert.registered_model(model)}


def delete_model(ctx: AppContext, project: str, name: str, actor: str) -> dict[str, Any]:
    """``registered-models/delete``: the model with its versions and aliases, as in MLflow."""
    registry.delete_model(ctx.store, project, name, force=True, actor=actor)
    return {}


def search_models(ctx: AppContext, project: str, search: RegistrySearch) -> dict[str, Any]:
    """``registered-models/search``: MLflow's filter grammar (``core.mlflow_filter``)."""
    page = registry.search_models(
        ctx.store,
        project,
        parse_mlflow_filter(search.filter, "models"),
        order_by=parse_mlflow_order(search.order_by, "models"),
        limit=min(search.max_results, MAX_PAGE),
        page_token=search.page_token,
    )
    found = _models_json(ctx, list(page.items))
    return {"registered_models": found, "next_page_token": page.next_cursor}


def latest_versions(ctx: AppContext, project: str, name: str, stages: list[str]) -> dict[str, Any]:
    """``registered-models/get-latest-versions``: the version in each stage asked (all when
    none); stages are aliases (``registry.stages``), ``None`` the newest version in none."""
    wanted = [parse_stage(s) for s in stages]
    found = registry.latest_versions(ctx.store, project, name, wanted)
    return {"model_versions": [_version_json(ctx, v) for v in found]}


def transition_stage(ctx: AppContext, project: str, body: StageBody, actor: str) -> dict[str, Any]:
    """``model-versions/transition-stage`` (MLflow 2): the stage's alias moves to the
    version, through the gate for Production (``champion``)."""
    moved = registry.transition_stage(
        ctx.store,
        project,
        body.name,
        _number(body.version),
        parse_stage(body.stage),
        archive_existing=body.archive_existing_versions,
        actor=actor,
    )
    return {"model_version": _version_json(ctx, moved)}


def rename_model(
    ctx: AppContext, project: str, name: str, new_name: str, actor: str
) -> dict[str, Any]:
    """``registered-models/rename``."""
    model = registry.rename_model(ctx.store, project, name, new_name, actor=actor)
    return {"registered_model": convert.registered_model(model)}


def _run_and_path(ctx: AppContext, project: str, source: str) -> tuple[str, str] | _MlflowFormat:
    for pattern in (_RUNS_SOURCE, _ARTIFACTS_SOURCE):
        match = pattern.fullmatch(source.rstrip("/"))
        if match is not None:
            return match.group(1), match.group(2)
    model = _MLFLOW_MODEL_SOURCE.fullmatch(source)
    if model is not None:
        with contextlib.suppress(NotFoundError):
            # MLflow 3 names a package loopml logged by its id (as /logged-models lists it).
            package = ctx.mlflow.loopml_package(project, model.group(2))
            return package.run_id, package.path
        with contextlib.suppress(NotFoundError):
            # A logged model whose files are a loopml package (ONNX or skops).
            return registry.package_of_mlflow_model(
                ctx.store, ctx.artifacts, project, model.group(2)
            )
        # A logged model in MLflow's own format: packaged by the converter.
        run_id, prefix = mlflow_packaging.mlflow_model_source(ctx.store, project, model.group(2))
        return _MlflowFormat(run_id, prefix, f"models:/{model.group(2)}")
    copied = _VERSION_SOURCE.fullmatch(source)
    if copied is not None:  # copy_model_version: the same package, in another model
        _, package = service.version_package(
            ctx.store, project, copied.group(1), _number(copied.group(2))
        )
        return package.run_id, package.path
    raise ValidationError(
        f"invalid source {source[:120]!r}: expected runs:/<run_id>/<path>, "
        "mlflow-artifacts:/runs/<run_id>/<path>, models:/<model_id> or models:/<name>/<version>",
        details={"field": "source"},
    )


def _mlflow_format(ctx: AppContext, project: str, run_id: str, path: str) -> _MlflowFormat | None:
    project_id = ctx.mlflow.project_id(project)
    prefix = join_key(layout.run_artifacts_prefix(project_id, run_id), validate_key(path))
    if ctx.artifacts.exists(join_key(prefix, "MLmodel")):
        return _MlflowFormat(run_id, prefix, path)
    return None


def _package_on_server(
    ctx: AppContext, project: str, name: str, found: _MlflowFormat, description: str, actor: str
) -> ModelVersion:
    if ctx.packager is None:
        raise MlflowApiError("INVALID_PARAMETER_VALUE", _NO_PACKAGER)
    version, job = mlflow_packaging.accept(
        ctx.store,
        project=project,
        model_name=name,
        run_id=found.run_id,
        mlflow_source=found.source,
        source_prefix=found.prefix,
        description=description,
        actor=actor,
    )
    # Answering with the settled version spares MLflow's client its polling (every 3 s).
    settled = ctx.packager.submit(job, wait_s=ctx.settings.mlflow.register_wait_s)
    return settled or version


def _register(
    ctx: AppContext, project: str, name: str, source: str, description: str, actor: str
) -> ModelVersion:
    found = _run_and_path(ctx, project, source)
    if isinstance(found, _MlflowFormat):
        return _package_on_server(ctx, project, name, found, description, actor)
    source_run, path = found
    try:
        return registry.register_version(
            ctx.store,
            ctx.artifacts,
            project=project,
            model_name=name,
            run_id=source_run,
            path=path,
            description=description,
            actor=actor,
        )
    except NotFoundError:
        mlflow_model = _mlflow_format(ctx, project, source_run, path)
        if mlflow_model is None:
            logged = _logged_by_name(ctx, project, source_run, path)
            if logged is None:
                raise
            # MLflow 3 keeps a model its run logged apart from the run, as models:/<id>;
            # runs:/<run>/<name> names it as MLflow's server resolves it.
            return _register(ctx, project, name, f"models:/{logged}", description, actor)
    return _package_on_server(ctx, project, name, mlflow_model, description, actor)


def _logged_by_name(ctx: AppContext, project: str, run_id: str, name: str) -> str | None:
    """The newest MLflow 3 model run ``run_id`` logged under ``name``, by id."""
    page, _ = ctx.mlflow.search_logged_models(
        project,
        experiment_ids=[],
        name=name,
        source_run_id=run_id,
        limit=1,
        cursor=None,
        with_packages=False,
    )
    return page.items[0].id if page.items else None


def create_version(
    ctx: AppContext,
    project: str,
    name: str,
    source: str,
    run_id: str | None,
    description: str,
    tags: dict[str, str],
    actor: str,
) -> dict[str, Any]:
    """``model-versions/create``: register the loopml package at ``source``; the answer is
    the settled version (READY or FAILED_REGISTRATION), so the client's wait ends at once.
    An MLflow-format model is answered PACKAGING (``PENDING_REGISTRATION``): MLflow's
    client polls ``get_model_version`` until the converter settles it."""
    version = _register(ctx, project, name, source, description, actor)
    for key, value in tags.items():
        version = service.set_version_tag(
            ctx.store, project, name, version.version, key, value, actor=actor
        )
    return {"model_version": _version_json(ctx, version)}


def get_version(ctx: AppContext, project: str, name: str, version: str) -> dict[str, Any]:
    """``model-versions/get``."""
    found = service.get_version(ctx.store, project, name, _number(version))
    return {"model_version": _version_json(ctx, found)}


def update_version(
    ctx: AppContext, project: str, name: str, version: str, description: str, actor: str
) -> dict[str, Any]:
    """``model-versions/update``: the description."""
    found = service.update_version(
        ctx.store, project, name, _number(version), description=description, actor=actor
    )
    return {"model_version": _version_json(ctx, found)}


def delete_version(
    ctx: AppContext, project: str, name: str, version: str, actor: str
) -> dict[str, Any]:
    """``model-versions/delete``: refused while an alias points at it."""
    registry.delete_version(ctx.store, project, name, _number(version), actor=actor)
    return {}


def search_versions(ctx: AppContext, project: str, search: RegistrySearch) -> dict[str, Any]:
    """``model-versions/search``: MLflow's filter grammar (``core.mlflow_filter``)."""
    page = registry.search_versions(
        ctx.store,
        project,
        parse_mlflow_filter(search.filter, "versions"),
        order_by=parse_mlflow_order(search.order_by, "versions"),
        limit=min(search.max_results, MAX_PAGE),
        page_token=search.page_token,
    )
    items = _versions_json(ctx, list(page.items))
    return {"model_versions": items, "next_page_token": page.next_cursor}


def _no_mlflow_model(name: str, version: ModelVersion, why: str) -> MlflowApiError:
    ref = f"{name}/{version.version}"
    return MlflowApiError(
        "INVALID_PARAMETER_VALUE",
        f"version {version.version} of model {name!r} {why}, so there is no MLflow model for "
        "MLflow's client to download and load (pyfunc.load_model needs an MLmodel file; "
        "loopml's package is ONNX/skops). Call it through loopml instead: `loopml deploy "
        f"{ref} --name <endpoint>` and its /v2/models/<endpoint>/infer URL, or fetch the "
        f"verified package with `python -m loopml.sdk.fetch --model {name} --version "
        f"{version.version} --dest <dir>`; see docs/mlflow.md",
    )


def _mlflow_source(
    ctx: AppContext, project: str, name: str, version: ModelVersion, package: LoggedModel
) -> str:
    """The artifact URI of the MLflow-format model ``package`` was made from: a folder of the
    package's run, or an MLflow 3 logged model of the project; its ``MLmodel`` must still be
    there (the source is what ``package-mlflow`` recorded, so it is checked, not trusted)."""
    source = package.summary.get("mlflow_source")
    if package.summary.get("from") != "mlflow" or not isinstance(source, str):
        raise _no_mlflow_model(name, version, "was not packaged from an MLflow-format model")
    model = _MLFLOW_MODEL_SOURCE.fullmatch(source)
    gone = _no_mlflow_model(
        name, version, f"was packaged from {source!r}, which holds no MLmodel file any more"
    )
    if model is not None:
        try:
            root = ctx.mlflow.logged_model_root(project, model.group(2))
        except NotFoundError as exc:
            raise gone from exc
        uri = f"mlflow-artifacts:/models/{model.group(2)}"
    else:
        project_id = ctx.mlflow.project_id(project)
        key = validate_key(source)
        root = join_key(layout.run_artifacts_prefix(project_id, package.run_id), key)
        uri = f"{convert.run_artifact_uri(package.run_id)}/{key}"
    if not ctx.artifacts.exists(join_key(root, "MLmodel")):
        raise gone
    return uri


def download_uri(ctx: AppContext, project: str, name: str, version: str) -> dict[str, Any]:
    """``model-versions/get-download-uri``: the MLflow-format model the version was packaged
    from (``loopml runs package-mlflow``), for MLflow's client to load itself; refused for a
    version with none (a package loopml trained)."""
    found, package = service.version_package(ctx.store, project, name, _number(version))
    return {"artifact_uri": _mlflow_source(ctx, project, name, found, package)}


def set_alias(
    ctx: AppContext, project: str, name: str, alias: str, version: str, actor: str
) -> dict[str, Any]:
    """``registered-models/alias`` (POST): through loopml's gate, like ``loopml models promote``."""
    registry.set_alias(ctx.store, project, name, alias, _number(version), actor=actor)
    return {}


def delete_alias(
    ctx: AppContext, project: str, name: str, alias: str, actor: str
) -> dict[str, Any]:
    """``registered-models/alias`` (DELETE)."""
    registry.remove_alias(ctx.store, project, name, alias, actor=actor)
    return {}


def version_by_alias(ctx: AppContext, project: str, name: str, alias: str) -> dict[str, Any]:
    """``registered-models/alias`` (GET)."""
    found = registry.resolve(ctx.store, project, f"{name}@{alias}")
    return {"model_version": _version_json(ctx, found)}


def set_model_tag(
    ctx: AppContext, project: str, name: str, key: str, value: str | None, actor: str
) -> dict[str, Any]:
    """``registered-models/set-tag`` and ``delete-tag`` (``value`` ``None``)."""
    if value is None:
        service.delete_model_tag(ctx.store, project, name, key, actor=actor)
    else:
        service.set_model_tag(ctx.store, project, name, key, value, actor=actor)
    return {}


def set_version_tag(
    ctx: AppContext,
    project: str,
    name: str,
    version: str,
    key: str,
    value: str | None,
    actor: str,
) -> dict[str, Any]:
    """``model-versions/set-tag`` and ``delete-tag`` (``value`` ``None``)."""
    number = _number(version)
    if value is None:
        service.delete_version_tag(ctx.store, project, name, number, key, actor=actor)
    else:
        service.set_version_tag(ctx.store, project, name, number, key, value, actor=actor)
    return {}


def ready(version: ModelVersion) -> bool:
    """Whether a version may be served (READY; not PENDING, PACKAGING or FAILED)."""
    return version.status == VersionStatus.READY
