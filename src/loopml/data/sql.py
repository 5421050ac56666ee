"""One project's lake tables, one sandboxed query: the SQL service the API's route and the
portal's console both call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml import projects
from loopml.data import lake
from loopml.data.warehouse import QueryResult, run_query
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

if TYPE_CHECKING:
    import pyarrow.dataset as pads


def run(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    query: str,
    *,
    limit: int,
    offset: int,
    timeout_s: float,
) -> QueryResult:
    """Run ``query`` over ``project``'s tables (and no other project's).

    Raises:
        NotFoundError: no such project, or a table (version) the query names.
        ValidationError: the query was refused or failed.
        QueryTimeoutError: it ran past ``timeout_s``.
    """
    projects.get(store, project)

    def resolve(table: str, version: int | None) -> pads.Dataset:
        return lake.read_dataset(store, artifacts, project, table, version)

    return run_query(query, resolve, limit=limit, offset=offset, timeout_s=timeout_s)
