"""The model registry over the API: models, versions, aliases, tags, lineage and GC.

Each function opens its own transaction(s) through the store or the registry services;
routes call these and hold no SQL.
"""

from __future__ import annotations

from loopml import registry
from loopml.api.context import AppContext
from loopml.api.schemas.registry import AliasSet
from loopml.core.errors import ValidationError
from loopml.core.refs import ModelRef
from loopml.core.registry import (
    GcReport,
    InputLineage,
    ModelVersion,
    RegisteredModel,
    VersionLineage,
    VersionStatus,
)
from loopml.core.types import Page
from loopml.store import events, model_tags, model_versions, models


def create_model(
    ctx: AppContext,
    project: str,
    name: str,
    description: str,
    tags: dict[str, str],
    actor: str,
) -> RegisteredModel:
    """Create a registered model (emits ``model.created``)."""
    with ctx.store.session() as session:
        return models.create(
            session, project, name, description=description, tags=tags, actor=actor
        )


def list_models(
    ctx: AppContext, project: str, limit: int, cursor: str | None
) -> Page[RegisteredModel]:
    """One page of a project's models, by name."""
    with ctx.store.session() as session:
        return models.list_(session, project, limit=limit, cursor=cursor)


def get_model(ctx: AppContext, project: str, name: str) -> RegisteredModel:
    """One registered model."""
    with ctx.store.session() as session:
        return models.get(session, project, name)


def update_model(
    ctx: AppContext, project: str, name: str, description: str, actor: str
) -> RegisteredModel:
    """Change a model's description."""
    with ctx.store.session() as session:
        return models.update(session, project, name, description=description, actor=actor)


def delete_model(ctx: AppContext, project: str, name: str, force: bool, actor: str) -> None:
    """Delete a model; with versions only when ``force``."""
    registry.delete_model(ctx.store, project, name, force=force, actor=actor)


def register_version(
    ctx: AppContext,
    project: str,
    model: str,
    run_id: str,
    path: str,
    description: str,
    actor: str,
) -> ModelVersion:
    """Register a run's logged model as the next version, verified file by file."""
    return registry.register_version(
        ctx.store,
        ctx.artifacts,
        project=project,
        model_name=model,
        run_id=run_id,
        path=path,
        description=description,
        actor=actor,
    )


def list_versions(
    ctx: AppContext,
    project: str,
    model: str,
    status: VersionStatus | None,
    limit: int,
    cursor: int | None,
) -> Page[ModelVersion]:
    """One page of a model's versions, newest first."""
    with ctx.store.session() as session:
        return model_versions.list_(
            session, project, model, status=status, limit=limit, cursor=cursor
        )


def get_version(ctx: AppContext, project: str, model: str, version: int) -> ModelVersion:
    """One version."""
    with ctx.store.session() as session:
        return model_versions.get(session, project, model, version)


def update_version(
    ctx: AppContext, project: str, model: str, version: int, description: str, actor: str
) -> ModelVersion:
    """Change a version's description."""
    with ctx.store.session() as session:
        return model_versions.update_description(
            session, project, model, version, description=description, actor=actor
        )


def delete_version(ctx: AppContext, project: str, model: str, version: int, actor: str) -> None:
    """Delete a version no alias points at."""
    registry.delete_version(ctx.store, project, model, version, actor=actor)


def set_alias(
    ctx: AppContext,
    project: str,
    model: str,
    alias: str,
    body: AliasSet,
    actor: str,
) -> ModelVersion:
    """Point an alias at a READY version (``champion`` only where the gate allows it)."""
    return registry.set_alias(
        ctx.store,
        project,
        model,
        alias,
        body.version,
        actor=actor,
        force=body.force_reason is not None,
        reason=body.force_reason,
    )


def remove_alias(ctx: AppContext, project: str, model: str, alias: str, actor: str) -> None:
    """Remove an alias."""
    registry.remove_alias(ctx.store, project, model, alias, actor=actor)


def set_model_tag(
    ctx: AppContext, project: str, model: str, key: str, value: str, actor: str
) -> RegisteredModel:
    """Set a model's tag."""
    with ctx.store.session() as session:
        return model_tags.set_model_tag(session, project, model, key, value, actor=actor)


def delete_model_tag(ctx: AppContext, project: str, model: str, key: str, actor: str) -> None:
    """Remove a model's tag."""
    with ctx.store.session() as session:
        model_tags.delete_model_tag(session, project, model, key, actor=actor)


def set_version_tag(
    ctx: AppContext, project: str, model: str, version: int, key: str, value: str, actor: str
) -> ModelVersion:
    """Set a version's tag."""
    with ctx.store.session() as session:
        return model_tags.set_version_tag(session, project, model, version, key, value, actor=actor)


def delete_version_tag(
    ctx: AppContext, project: str, model: str, version: int, key: str, actor: str
) -> None:
    """Remove a version's tag."""
    with ctx.store.session() as session:
        model_tags.delete_version_tag(session, project, model, version, key, actor=actor)


def _in_project(project: str, ref: str) -> ModelRef:
    parsed = ModelRef.parse(ref)
    if parsed.project is not None:
        raise ValidationError(
            f"invalid model reference {ref!r} here: the project comes from the URL "
            f"({project!r}); drop the {parsed.project + ':'!r} prefix, or ask under "
            f"/api/v1/projects/{parsed.project}/",
            details={"field": "ref"},
        )
    return parsed


def resolve(ctx: AppContext, project: str, ref: str) -> ModelVersion:
    """The version a ``ModelRef`` names in ``project``."""
    return registry.resolve(ctx.store, project, _in_project(project, ref))


def version_lineage(ctx: AppContext, project: str, model: str, version: int) -> VersionLineage:
    """A version's run and that run's inputs."""
    ref = ModelRef(name=model, version=version)
    return registry.version_lineage(ctx.store, project, ref)


def input_lineage(ctx: AppContext, project: str, kind: str, ref: str) -> InputLineage:
    """The runs that consumed an input and the versions built from them."""
    return registry.input_lineage(ctx.store, project, kind, ref)


def collect_garbage(ctx: AppContext, dry_run: bool, actor: str) -> GcReport:
    """Free the artifacts of deleted projects and runs; a real run (not a dry one) is
    recorded as a platform-wide ``gc.ran`` event with its actor and what it freed."""
    report = registry.collect_garbage(ctx.store, ctx.artifacts, dry_run=dry_run)
    if not dry_run:
        with ctx.store.session() as session:
            events.append(
                session,
                type="gc.ran",
                subject="artifacts",
                project=None,
                payload={
                    "objects": report.objects,
                    "bytes": report.bytes,
                    "prefixes": len(report.prefixes),
                    "temporary_removed": report.temporary_removed,
                },
                actor=actor,
            )
    return report
