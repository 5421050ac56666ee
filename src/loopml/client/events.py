"""The event feed through the API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from loopml.client._http import Http
from loopml.core.types import Event, Page


class Events:
    """``client.events``: list and iterate the append-only event feed."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def list(
        self,
        *,
        type: str | None = None,
        project: str | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
        actor: str | None = None,
        newest_first: bool = False,
    ) -> Page[Event]:
        """One page of events, oldest first (newest first with ``newest_first``). ``type``
        may end in ``.*`` to match a prefix; ``actor`` ``user:ada`` also matches that user's
        tokens."""
        params: dict[str, str | int] = {"limit": limit}
        if actor:
            params["actor"] = actor
        if newest_first:
            params["order"] = "desc"
        if type:
            params["type"] = type
        if project:
            params["project"] = project
        if since:
            params["since"] = since.isoformat()
        if cursor:
            params["cursor"] = cursor
        return Page[Event].model_validate(self._http.json("GET", "/api/v1/events", params=params))

    def iter(
        self,
        *,
        type: str | None = None,
        project: str | None = None,
        since: datetime | None = None,
        page_size: int = 500,
        actor: str | None = None,
        newest_first: bool = False,
    ) -> Iterator[Event]:
        """Every matching event, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list(
                type=type,
                project=project,
                since=since,
                cursor=cursor,
                limit=page_size,
                actor=actor,
                newest_first=newest_first,
            )
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor
