"""Garbage collection of artifacts whose owner is gone.

Scope: folders ``projects/<id>/`` whose project no longer exists, and
``projects/<id>/runs/<run_id>/`` whose run no longer exists (or belongs to another
project), plus the temporary files of interrupted writes (``ArtifactStore.cleanup``).
Nothing else is touched: a live project's own artifacts and every file of a live run stay,
and a run a model version was built from cannot be deleted (``ON DELETE RESTRICT``), so no
version ever loses its package.

Objects are listed *before* the database is asked who is alive: a run's or project's row is
committed before any of its files is written, so every listed file of a live owner is seen
as live. The listing is processed in batches, so memory stays bounded on a large store.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta

from loopml.core.errors import NotFoundError
from loopml.core.registry import GcReport
from loopml.storage import ArtifactStore, ObjectInfo
from loopml.store import MetadataStore, events, lineage

log = logging.getLogger("loopml.registry")

ROOT = "projects"
BATCH = 1000
MAX_LISTED_PREFIXES = 1000


def _batches(objects: Iterator[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    batch: list[ObjectInfo] = []
    for info in objects:
        batch.append(info)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _owner(key: str) -> tuple[str, str | None]:
    """``(project_id, run_id or None)`` of a key under ``projects/``."""
    parts = key.split("/", 4)
    run_id = parts[3] if len(parts) >= 5 and parts[2] == "runs" else None
    return parts[1], run_id


def _garbage_prefix(key: str, projects: set[str], runs: dict[str, str]) -> str | None:
    project_id, run_id = _owner(key)
    if project_id not in projects:
        return f"{ROOT}/{project_id}/"
    if run_id is not None and runs.get(run_id) != project_id:
        return f"{ROOT}/{project_id}/runs/{run_id}/"
    return None


def _orphans(store: MetadataStore, batch: list[ObjectInfo]) -> list[tuple[str, ObjectInfo]]:
    owners = [_owner(info.key) for info in batch]
    with store.session() as session:
        projects = lineage.existing_projects(session, sorted({p for p, _ in owners}))
        runs = lineage.existing_runs(session, sorted({r for _, r in owners if r}))
    found = []
    for info in batch:
        prefix = _garbage_prefix(info.key, projects, runs)
        if prefix is not None:
            found.append((prefix, info))
    return found


def collect_garbage(
    store: MetadataStore,
    artifacts: ArtifactStore,
    *,
    dry_run: bool = False,
    temporary_older_than: timedelta = timedelta(hours=1),
    actor: str = "system",
) -> GcReport:
    """Delete the artifacts of deleted projects and runs, and stale temporary files.

    Args:
        store: the metadata database, asked which projects and runs exist.
        artifacts: the artifact store to clean (local folder or S3).
        dry_run: only report what would be freed.
        temporary_older_than: age past which a temporary file of a write is abandoned.
        actor: who asked; a real run (not a dry one) is recorded as a platform-wide
            ``gc.ran`` event with what it freed.

    Returns:
        Objects and bytes freed (or that would be), the orphaned folders (first 1000), and
        how many temporary files were removed.
    """
    objects = bytes_freed = 0
    prefixes: dict[str, None] = {}
    for batch in _batches(artifacts.list(ROOT)):
        for prefix, info in _orphans(store, batch):
            if not dry_run:
                with contextlib.suppress(NotFoundError):  # deleted concurrently: goal reached
                    artifacts.delete(info.key)
            objects += 1
            bytes_freed += info.size
            if len(prefixes) < MAX_LISTED_PREFIXES:
                prefixes[prefix] = None
    temporary = 0 if dry_run else artifacts.cleanup(temporary_older_than)
    log.info(
        "garbage collection%s: %d objects, %d bytes, %d temporary files",
        " (dry run)" if dry_run else "",
        objects,
        bytes_freed,
        temporary,
    )
    report = GcReport(
        dry_run=dry_run,
        objects=objects,
        bytes=bytes_freed,
        prefixes=list(prefixes),
        temporary_removed=temporary,
    )
    if not dry_run:
        with store.session() as session:
            events.append(
                session,
                type="gc.ran",
                subject="artifacts",
                project=None,
                payload={
                    "objects": objects,
                    "bytes": bytes_freed,
                    "prefixes": len(prefixes),
                    "temporary_removed": temporary,
                },
                actor=actor,
            )
    return report
