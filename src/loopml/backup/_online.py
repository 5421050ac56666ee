"""The online store after a restore: the embedded one comes back as the file the backup
holds; any other (Redis) is filled again from the restored lake.

A backup does not export Redis: its keys are a cache of the lake, readable at no single
point in time with the database, and a restore often targets another Redis. Refilled from
the lake at the snapshot's versions, a view holds each entity's newest values as of the
snapshot, whatever Redis held then (docs/operations.md, "Backup and restore").
"""

from __future__ import annotations

from loopml.backup.manifest import ONLINE_PATH, Manifest
from loopml.data.features.materialize import refill
from loopml.data.features.online import OnlineStore, open_online_store
from loopml.settings import Settings
from loopml.store import MetadataStore, feature_views
from loopml.wiring import open_artifact_store, open_metadata_store


def restored_as_file(settings: Settings, manifest: Manifest) -> bool:
    """Whether the restore brought the online store back as the backup's ``online.db``."""
    has_file = any(f.path == ONLINE_PATH for f in manifest.files)
    return has_file and settings.features.online.type == "sqlite"


def refill_online(settings: Settings) -> tuple[dict[str, int], list[str]]:
    """Fill the restored platform's online store from its lake, for every view that was
    materialized (the version materialized).

    Returns:
        The entities written per ``project/view``, and a note for each view that could
        not be refilled (what failed, and the command that refills it by hand).
    """
    store = open_metadata_store(settings)
    try:
        with store.session() as session:
            views = feature_views.materialized(session)
        if not views:
            return {}, []
        online = open_online_store(settings.features.online, settings.home)
        try:
            return _refill_each(settings, store, online, views)
        finally:
            online.close()
    finally:
        store.dispose()


def _refill_each(
    settings: Settings,
    store: MetadataStore,
    online: OnlineStore,
    views: list[tuple[str, str, int]],
) -> tuple[dict[str, int], list[str]]:
    artifacts = open_artifact_store(settings)
    written: dict[str, int] = {}
    notes: list[str] = []
    for project, name, version in views:
        try:
            written[f"{project}/{name}"] = refill(
                store,
                artifacts,
                online,
                project,
                name,
                version,
                chunk_rows=settings.features.materialize_chunk_rows,
            )
        # The rest of the restore is done and stays: one view's failure (its source
        # dropped, the store unreachable) is reported with the way to finish it.
        except Exception as exc:
            notes.append(
                f"feature view {project}/{name} was not refilled in the online store "
                f"({type(exc).__name__}: {str(exc)[:200]}): run `loopml features "
                f"materialize {name} --full -p {project}` once the platform is up"
            )
    return written, notes
