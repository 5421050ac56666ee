"""What every route needs, built once per app and handed in as a dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from loopml.data.features.online import LazyOnlineStore
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

# With authentication off, every change is recorded as made by this actor.
ANONYMOUS_ACTOR = "anonymous"


@dataclass(frozen=True)
class AppContext:
    """The backends the app was built with (Dagster-style resources, never globals)."""

    settings: Settings
    store: MetadataStore
    artifacts: ArtifactStore
    online: LazyOnlineStore


def get_context(request: Request) -> AppContext:
    """The app's context, as stored on ``app.state`` by the factory."""
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_actor(request: Request) -> str:
    """Who is making the request: ``user:<name>/token:<id>`` once the permission check let a
    token through (``web/authz.py`` runs first), ``anonymous`` with authentication off."""
    principal = getattr(request.state, "principal", None)
    return str(principal.actor) if principal is not None else ANONYMOUS_ACTOR


Ctx = Annotated[AppContext, Depends(get_context)]
Actor = Annotated[str, Depends(get_actor)]
