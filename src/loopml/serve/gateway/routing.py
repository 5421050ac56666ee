"""What the gateway needs to know to route a deployment's requests, and who tells it.

A target that runs replicas the gateway can reach (the local target) publishes, per
deployment, an immutable ``Routes`` snapshot: the revisions that get traffic with their
weights and their ready replicas (``Backend``), and the shadow revision. The gateway reads the
snapshot on every request without a lock; the target swaps in a new one whenever a replica
becomes ready or goes away, or traffic moves.

A ``Backend`` is shared and mutable in three fields only: ``inflight``, counted by the gateway
(on the event loop) and read by the target to drain a replica before stopping it (and to
scale), ``remote``, the same count in the platform's gateway processes as they last reported
it, and ``failed``, set by the gateway when a connection to it fails so that later requests
avoid it until the target has checked it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from loopml.core.deployments import FeatureServing


class Backend:
    """One ready replica as the gateway reaches it."""

    __slots__ = ("failed", "inflight", "model", "remote", "revision", "url", "version")

    def __init__(self, url: str, revision: int, model: str, version: int) -> None:
        self.url = url
        self.revision = revision
        self.model = model
        self.version = version
        self.inflight = 0
        self.remote = 0
        self.failed = False

    @property
    def load(self) -> int:
        """Its requests in flight, through the platform's gateway and its gateway processes."""
        return self.inflight + self.remote

    def __repr__(self) -> str:
        return f"Backend({self.url!r}, revision={self.revision}, inflight={self.inflight})"


@dataclass(frozen=True)
class RevisionRoute:
    """One revision: its model version, its share of traffic and its ready replicas."""

    number: int
    model: str
    version: int
    weight: int
    backends: tuple[Backend, ...]
    role: str = "primary"
    """``primary`` or ``canary`` (as the prediction log records it)."""

    def usable(self) -> tuple[Backend, ...]:
        """The replicas no request has just failed to reach."""
        return tuple([b for b in self.backends if not b.failed])


@dataclass(frozen=True)
class Routes:
    """A deployment's routing state at one moment.

    Attributes:
        revisions: the revisions that get traffic (``weight`` > 0, summing to 100).
        shadow: the revision that gets a copy of each request, if any.
        asleep: scaled to zero: no replica runs until ``RouteSource.wake``.
        auth: the deployment's ``auth`` (``token`` or ``none``), so the serving check knows
            without a database round trip whether an anonymous call may pass.
        features: the feature views the gateway completes each request from, if any.
    """

    project: str
    name: str
    revisions: tuple[RevisionRoute, ...]
    shadow: RevisionRoute | None = None
    asleep: bool = False
    auth: str = "token"
    features: FeatureServing | None = None


class RouteSource(Protocol):
    """Where the gateway gets routes, and how it tells the target about demand."""

    def routes(self, project: str, name: str) -> Routes | None:
        """The deployment's current routes; ``None`` when this target does not run it."""
        ...

    def all_routes(self) -> list[Routes]:
        """Every deployment's routes (for metrics)."""
        ...

    def touch(self, project: str, name: str) -> None:
        """A request arrived (resets the idle clock of scale-to-zero); never blocks."""
        ...

    def wake(self, project: str, name: str) -> None:
        """Start replicas for a deployment that has none ready (the activator)."""
        ...
