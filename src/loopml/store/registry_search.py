"""Registered models and model versions found by ``core.mlflow_filter`` clauses (MLflow's
search grammar), ordered and paged by offset: one query per page, plus the converters' fixed
few for tags and aliases.

A version's MLflow ``source_path`` is ``mlflow-artifacts:/runs/<run_id>/<path>`` of the
package it was registered from, as ``api.mlflow`` shows it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, literal, not_, or_, select
from sqlalchemy.orm import Session

from loopml.core.mlflow_filter import IS_PROMPT_TAG, FilterClause, FilterOrder
from loopml.core.registry import ModelVersion, RegisteredModel
from loopml.core.types import Page
from loopml.store._checks import check_limit
from loopml.store._like import compare, parse_page_token
from loopml.store._registry import models_to_domain, versions_query, versions_to_domain
from loopml.store.orm import (
    LoggedModelRow,
    ModelTagRow,
    ModelVersionRow,
    ModelVersionTagRow,
    RegisteredModelRow,
)
from loopml.store.project_lookup import project_row

_MODEL_ORDER = {
    "name": RegisteredModelRow.name,
    "creation_timestamp": RegisteredModelRow.created_at,
    "last_updated_timestamp": RegisteredModelRow.updated_at,
}
_VERSION_ORDER = {
    "name": RegisteredModelRow.name,
    "version_number": ModelVersionRow.version,
    "creation_timestamp": ModelVersionRow.created_at,
    "last_updated_timestamp": ModelVersionRow.updated_at,
}


def _tag(table: Any, owner: Any, clause: FilterClause) -> ColumnElement[bool]:
    """A tag clause; a model without the ``is_prompt`` tag is no prompt (MLflow's rule)."""
    keyed = and_(table.key == clause.key, owner)
    matches = exists().where(keyed, compare(table.value, clause.op, clause.value))
    missing_matches = clause.key == IS_PROMPT_TAG and (clause.op, clause.value) in (
        ("!=", "true"),
        ("=", "false"),
    )
    return or_(matches, not_(exists().where(keyed))) if missing_matches else matches


def _model_where(clause: FilterClause) -> ColumnElement[bool]:
    if clause.kind == "tag":
        return _tag(ModelTagRow, ModelTagRow.model_id == RegisteredModelRow.id, clause)
    return compare(RegisteredModelRow.name, clause.op, clause.value)


def _page(items: list[Any], limit: int, offset: int) -> tuple[list[Any], str | None]:
    more = len(items) > limit
    return items[:limit], (str(offset + limit) if more else None)


def search_models(
    session: Session,
    project: str,
    clauses: list[FilterClause],
    *,
    order_by: list[FilterOrder] | None = None,
    limit: int = 100,
    page_token: str | None = None,
) -> Page[RegisteredModel]:
    """A page of the project's registered models matching every clause (by name unless
    ``order_by`` says otherwise); ``next_cursor`` is the next page's token."""
    check_limit(limit)
    offset = parse_page_token(page_token)
    proj = project_row(session, project)
    query = select(RegisteredModelRow).where(RegisteredModelRow.project_id == proj.id)
    for clause in clauses:
        query = query.where(_model_where(clause))
    terms = [_term(_MODEL_ORDER[o.key], o.descending) for o in order_by or []]
    query = query.order_by(*terms, RegisteredModelRow.name).offset(offset).limit(limit + 1)
    rows, next_token = _page(list(session.scalars(query)), limit, offset)
    items = models_to_domain(session, project, rows)
    return Page[RegisteredModel](items=items, next_cursor=next_token)


def _term(column: Any, descending: bool) -> Any:
    return column.desc() if descending else column.asc()


def _source_path() -> Any:
    path = select(LoggedModelRow.path).where(LoggedModelRow.id == ModelVersionRow.logged_model_id)
    prefix = literal("mlflow-artifacts:/runs/")
    return prefix + ModelVersionRow.run_id + literal("/") + path.scalar_subquery()


def _version_where(clause: FilterClause) -> ColumnElement[bool]:
    if clause.kind == "tag":
        owner = ModelVersionTagRow.version_id == ModelVersionRow.id
        return _tag(ModelVersionTagRow, owner, clause)
    column: Any = {
        "name": RegisteredModelRow.name,
        "run_id": ModelVersionRow.run_id,
        "version_number": ModelVersionRow.version,
    }.get(clause.key)
    if column is None:
        column = _source_path()
    if clause.op == "IN":
        return column.in_(list(clause.value))  # type: ignore[arg-type,no-any-return]
    return compare(column, clause.op, clause.value)


def search_versions(
    session: Session,
    project: str,
    clauses: list[FilterClause],
    *,
    order_by: list[FilterOrder] | None = None,
    limit: int = 100,
    page_token: str | None = None,
) -> Page[ModelVersion]:
    """A page of the project's model versions matching every clause: by model name, then
    newest version first, unless ``order_by`` says otherwise."""
    check_limit(limit)
    offset = parse_page_token(page_token)
    proj = project_row(session, project)
    query: Select[Any] = versions_query().where(RegisteredModelRow.project_id == proj.id)
    for clause in clauses:
        query = query.where(_version_where(clause))
    terms = [_term(_VERSION_ORDER[o.key], o.descending) for o in order_by or []]
    query = query.order_by(*terms, RegisteredModelRow.name, ModelVersionRow.version.desc())
    records = session.execute(query.offset(offset).limit(limit + 1)).tuples().all()
    page, next_token = _page(list(records), limit, offset)
    return Page[ModelVersion](items=versions_to_domain(session, page), next_cursor=next_token)
