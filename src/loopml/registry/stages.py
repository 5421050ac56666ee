"""MLflow 2's model version stages as loopml aliases (``core.mlflow_models.STAGE_ALIASES``):
moving a version to a stage points that stage's alias at it, through the same alias rules
(``versions.move_alias``: Production is ``champion``, so the gate decides), and takes the
version's other stage aliases off it, so a version is in one stage at a time. One
transaction: a refused move changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from loopml.core.mlflow_models import STAGE_ALIASES, STAGES, stage_of
from loopml.core.registry import ModelVersion, RegisteredModel
from loopml.registry.versions import move_alias
from loopml.store import MetadataStore, model_versions, models


def transition_stage(
    store: MetadataStore,
    project: str,
    model: str,
    version: int,
    stage: str,
    *,
    archive_existing: bool = False,
    actor: str,
) -> ModelVersion:
    """Put ``version`` in ``stage`` (one of ``STAGES``); with ``archive_existing``, the
    version that held the stage before goes to Archived, as in MLflow.

    Raises:
        GateRequiredError: Production for a version the gate has not passed.
        ConflictError: the version is not READY.
        NotFoundError: no such model or version.
    """
    with store.session() as session:
        current = model_versions.get(session, project, model, version)
        alias = STAGE_ALIASES.get(stage)
        previous = _holder(session, project, model, alias) if alias else None
        if alias is not None:
            move_alias(session, project, model, alias, version, actor=actor)
        for other in (a for s, a in STAGE_ALIASES.items() if s != stage):
            if other in current.aliases:
                models.delete_alias(session, project, model, other, actor=actor)
        archive = STAGE_ALIASES["Archived"]
        moved_off = previous is not None and previous != version
        if archive_existing and moved_off and alias != archive and previous is not None:
            move_alias(session, project, model, archive, previous, actor=actor)
        return model_versions.get(session, project, model, version)


def _holder(session: Session, project: str, model: str, alias: str) -> int | None:
    held = models.get(session, project, model).aliases
    return held.get(alias)


def latest_versions(
    store: MetadataStore, project: str, model: str, stages: list[str]
) -> list[ModelVersion]:
    """MLflow's ``get_latest_versions``: for each stage asked (all when none), the version
    in it; for ``None``, the newest version in no stage."""
    wanted = [s for s in STAGES if s in stages] if stages else list(STAGES)
    found: list[ModelVersion] = []
    with store.session() as session:
        aliases = models.get(session, project, model).aliases
        for stage in wanted:
            if stage == "None":
                newest = _newest_unstaged(session, project, model)
                found += [newest] if newest is not None else []
            elif STAGE_ALIASES[stage] in aliases:
                number = aliases[STAGE_ALIASES[stage]]
                found.append(model_versions.get(session, project, model, number))
    return found


def latest_versions_of(
    store: MetadataStore, models_: Sequence[RegisteredModel]
) -> dict[str, list[ModelVersion]]:
    """``latest_versions`` of each model (by name) as MLflow lists them with a registered
    model: the version in each stage and the newest in none, in stage order; a few queries
    for the whole page, not a few a model."""
    order = {stage: index for index, stage in enumerate(STAGES)}
    with store.session() as session:
        found = model_versions.newest_in_stages(
            session, [m.id for m in models_], STAGE_ALIASES.values()
        )
    return {m.name: sorted(found[m.id], key=lambda v: order[stage_of(v.aliases)]) for m in models_}


def _newest_unstaged(session: Session, project: str, model: str) -> ModelVersion | None:
    cursor: int | None = None
    while True:
        page = model_versions.list_(session, project, model, limit=100, cursor=cursor)
        for item in page.items:
            if stage_of(item.aliases) == "None":
                return item
        if page.next_cursor is None:
            return None
        cursor = int(page.next_cursor)
