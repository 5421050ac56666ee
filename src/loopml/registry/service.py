"""The registry's records as services: registered models, their versions and tags, and
references resolved within a project. Each function takes the store and opens its own
transaction, so the API, the CLI and the portal call the same code; registering, aliases,
deletion, lineage and garbage collection are in ``versions``, ``lineage`` and ``gc``."""

from __future__ import annotations

from collections.abc import Collection

from loopml.core.errors import ValidationError
from loopml.core.mlflow_filter import FilterClause, FilterOrder
from loopml.core.refs import ModelRef
from loopml.core.registry import ModelVersion, RegisteredModel, VersionStatus
from loopml.core.runs import LoggedModel
from loopml.core.types import Page
from loopml.registry.versions import resolve
from loopml.store import (
    MetadataStore,
    lineage,
    logged_models,
    model_tags,
    model_versions,
    models,
    registry_search,
)
from loopml.store.lineage import LoggedModelInfo


def create_model(
    store: MetadataStore,
    project: str,
    name: str,
    *,
    description: str = "",
    tags: dict[str, str] | None = None,
    actor: str,
) -> RegisteredModel:
    """Create a registered model (emits ``model.created``)."""
    with store.session() as session:
        return models.create(
            session, project, name, description=description, tags=tags or {}, actor=actor
        )


def list_models(
    store: MetadataStore, project: str, *, limit: int = 100, cursor: str | None = None
) -> Page[RegisteredModel]:
    """One page of a project's models, by name."""
    with store.session() as session:
        return models.list_(session, project, limit=limit, cursor=cursor)


def search_models(
    store: MetadataStore,
    project: str,
    clauses: list[FilterClause],
    *,
    order_by: list[FilterOrder] | None = None,
    limit: int = 100,
    page_token: str | None = None,
) -> Page[RegisteredModel]:
    """One page of the models matching every clause (``core.mlflow_filter``)."""
    with store.session() as session:
        return registry_search.search_models(
            session, project, clauses, order_by=order_by, limit=limit, page_token=page_token
        )


def search_versions(
    store: MetadataStore,
    project: str,
    clauses: list[FilterClause],
    *,
    order_by: list[FilterOrder] | None = None,
    limit: int = 100,
    page_token: str | None = None,
) -> Page[ModelVersion]:
    """One page of the versions, of any model of the project, matching every clause."""
    with store.session() as session:
        return registry_search.search_versions(
            session, project, clauses, order_by=order_by, limit=limit, page_token=page_token
        )


def get_model(store: MetadataStore, project: str, name: str) -> RegisteredModel:
    """One registered model, or ``NotFoundError``."""
    with store.session() as session:
        return models.get(session, project, name)


def update_model(
    store: MetadataStore, project: str, name: str, *, description: str, actor: str
) -> RegisteredModel:
    """Change a model's description."""
    with store.session() as session:
        return models.update(session, project, name, description=description, actor=actor)


def rename_model(
    store: MetadataStore, project: str, name: str, new_name: str, *, actor: str
) -> RegisteredModel:
    """Rename a model (refused while a deployment names it)."""
    with store.session() as session:
        return models.rename(session, project, name, new_name, actor=actor)


def list_versions(
    store: MetadataStore,
    project: str,
    model: str,
    *,
    status: VersionStatus | None = None,
    limit: int = 100,
    cursor: int | None = None,
) -> Page[ModelVersion]:
    """One page of a model's versions, newest first."""
    with store.session() as session:
        return model_versions.list_(
            session, project, model, status=status, limit=limit, cursor=cursor
        )


def get_version(store: MetadataStore, project: str, model: str, version: int) -> ModelVersion:
    """One version, or ``NotFoundError``."""
    with store.session() as session:
        return model_versions.get(session, project, model, version)


def version_package(
    store: MetadataStore, project: str, model: str, version: int
) -> tuple[ModelVersion, LoggedModel]:
    """One version and the package it was registered from."""
    with store.session() as session:
        found = model_versions.get(session, project, model, version)
        return found, logged_models.get(session, project, found.logged_model_id)


def update_version(
    store: MetadataStore, project: str, model: str, version: int, *, description: str, actor: str
) -> ModelVersion:
    """Change a version's description."""
    with store.session() as session:
        return model_versions.update_description(
            session, project, model, version, description=description, actor=actor
        )


def set_model_tag(
    store: MetadataStore, project: str, model: str, key: str, value: str, *, actor: str
) -> RegisteredModel:
    """Set a model's tag."""
    with store.session() as session:
        return model_tags.set_model_tag(session, project, model, key, value, actor=actor)


def delete_model_tag(
    store: MetadataStore, project: str, model: str, key: str, *, actor: str
) -> None:
    """Remove a model's tag."""
    with store.session() as session:
        model_tags.delete_model_tag(session, project, model, key, actor=actor)


def set_version_tag(
    store: MetadataStore,
    project: str,
    model: str,
    version: int,
    key: str,
    value: str,
    *,
    actor: str,
) -> ModelVersion:
    """Set a version's tag."""
    with store.session() as session:
        return model_tags.set_version_tag(session, project, model, version, key, value, actor=actor)


def delete_version_tag(
    store: MetadataStore, project: str, model: str, version: int, key: str, *, actor: str
) -> None:
    """Remove a version's tag."""
    with store.session() as session:
        model_tags.delete_version_tag(session, project, model, version, key, actor=actor)


def resolve_in_project(store: MetadataStore, project: str, ref: str) -> ModelVersion:
    """The version a reference names in ``project``, where the project is already given
    (a URL's), so a reference that names a project of its own is refused.

    Raises:
        ValidationError: a malformed reference, or one with a ``project:`` prefix.
        NotFoundError: no such model, version or alias.
    """
    parsed = ModelRef.parse(ref)
    if parsed.project is not None:
        raise ValidationError(
            f"invalid model reference {ref!r} here: the project comes from the URL "
            f"({project!r}); drop the {parsed.project + ':'!r} prefix, or ask under "
            f"/api/v1/projects/{parsed.project}/",
            details={"field": "ref"},
        )
    return resolve(store, project, parsed)


def package_sources(
    store: MetadataStore, logged_model_ids: Collection[str]
) -> dict[str, tuple[str, str]]:
    """The run and folder of each logged model (by id) in one query: what a page of versions
    names as its source. An id whose run was deleted is left out."""
    with store.session() as session:
        return lineage.package_paths(session, logged_model_ids)


def package_location(store: MetadataStore, logged_model_id: str) -> LoggedModelInfo:
    """Where the package a version was registered from is (its project, run and folder).

    Raises:
        NotFoundError: no such logged model (its run was deleted).
    """
    with store.session() as session:
        return lineage.logged_model(session, logged_model_id)
