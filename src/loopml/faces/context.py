"""What every route and page needs, built once per app: the backends (``AppContext``) and
the running platform's parts (``Running``), stored once on ``app.state.running`` by the app
factory and read through ``running_of`` or the ``Ctx`` dependency."""

from __future__ import annotations

import asyncio
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from starlette.applications import Starlette

from loopml.data.features.online import LazyOnlineStore
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore as MetadataStore

if TYPE_CHECKING:
    from loopml.auth.ratelimit import FailureLimiter
    from loopml.data.records import RecordBatcher
    from loopml.deploy import DeploymentControl, Serving
    from loopml.deploy.gateways import FrontDoor, GatewayProcesses
    from loopml.monitor.disk import DiskReserve, DiskSpace
    from loopml.registry.mlflow_packaging import MlflowPackager
    from loopml.train.tracking.mlflow_records import MlflowRecords

# With authentication off, every change is recorded as made by this actor.
ANONYMOUS_ACTOR = "anonymous"


@dataclass(frozen=True)
class AppContext:
    """The backends the app was built with (Dagster-style resources, never globals)."""

    settings: Settings
    store: MetadataStore
    artifacts: ArtifactStore
    online: LazyOnlineStore
    # The MLflow REST layer's records (one transaction a call).
    mlflow: MlflowRecords
    # Packages MLflow-format models registered through the MLflow API (sandboxed converter
    # jobs on the app's threads); None where the app registers none.
    packager: MlflowPackager | None = None


@dataclass
class Running:
    """The running platform's parts: the one object the app factory puts on ``app.state``.

    The first four exist once the app is built; the others are filled in as the server
    starts (``records`` and ``gateways`` by the app's lifespan, ``front`` by ``loopml up``).
    """

    context: AppContext
    serving: Serving
    # The per-install secret: tokens' HMACs and forms' CSRF tokens are keyed by it.
    auth_key: bytes
    # Failed logins and token checks per client address (one counter per app).
    auth_failures: FailureLimiter
    records: RecordBatcher | None = None
    gateways: GatewayProcesses | None = None
    front: FrontDoor | None = None
    # Free space of the home's disk and the writes refused for lack of it (``/metrics``).
    disk: DiskSpace | None = None
    # The space kept in the home for a delete, vacuum or gc on a full disk.
    reserve: DiskReserve | None = None
    # Set by ``loopml up`` once its port answers: the lifespan starts what health does not
    # need (worker, automation, streams, monitor, start-up housekeeping) after it. None
    # (an app served otherwise, as in tests): everything starts before the app serves.
    listening: asyncio.Event | None = None
    # Set when health first answers ready: ``loopml up`` opens ``listening`` then (or a
    # second after its port listens, whichever is first), so the first probe does not share
    # the interpreter with the deferred work's start.
    answered: threading.Event = field(default_factory=threading.Event)


def running_of(app: Starlette) -> Running:
    """The running platform's parts of ``app`` (one built by ``loopml.platform``)."""
    running: Running = app.state.running
    return running


def get_running(request: Request) -> Running:
    """The running platform's parts of the request's app."""
    return running_of(request.app)


def get_control(request: Request) -> DeploymentControl:
    """The app's deployments control plane (a route dependency)."""
    return running_of(request.app).serving.control


def get_context(request: Request) -> AppContext:
    """The app's backends."""
    return running_of(request.app).context


def get_actor(request: Request) -> str:
    """Who is making the request: ``user:<name>/token:<id>`` once the permission check let a
    token through (``faces/authz.py`` runs first), ``anonymous`` with authentication off."""
    principal = getattr(request.state, "principal", None)
    return str(principal.actor) if principal is not None else ANONYMOUS_ACTOR


def freeing_space(request: Request, what: str) -> AbstractContextManager[None]:
    """Around a route that frees space (``what``: "a table delete"): the home's reserve is
    released for it on a full disk (``DiskReserve.freeing``)."""
    reserve = running_of(request.app).reserve
    return nullcontext() if reserve is None else reserve.freeing(what)


Ctx = Annotated[AppContext, Depends(get_context)]
RunningParts = Annotated[Running, Depends(get_running)]
Actor = Annotated[str, Depends(get_actor)]
