"""The event feed as a service: what the API, the CLI and the portal read of the append-only
record of every state change (``loopml.store.events`` writes and pages it; this opens the
transaction, so callers hold no session)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from loopml.core.types import Event, Page
from loopml.store import MetadataStore, events


def list_events(
    store: MetadataStore,
    *,
    type: str | None = None,
    project: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
    actor: str | None = None,
    newest_first: bool = False,
    projects: Sequence[str] | None = None,
) -> Page[Event]:
    """One page of events, oldest first (newest first with ``newest_first``); the filters
    are those of ``loopml.store.events.list_``.

    Raises:
        ValidationError: a bad filter, ``cursor`` or ``limit``.
    """
    with store.session() as session:
        return events.list_(
            session,
            type=type,
            project=project,
            since=since,
            cursor=cursor,
            limit=limit,
            actor=actor,
            newest_first=newest_first,
            projects=projects,
        )
