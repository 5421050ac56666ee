"""How the local target runs replicas; the platform builds it from the ``local`` and
``autoscale`` settings sections (``deploy.targets.local_config``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from loopml.deploy.targets._autoscale import AutoscalePolicy


@dataclass(frozen=True)
class LocalTargetConfig:
    """How the local target runs replicas (defaults suit one machine).

    Attributes:
        host: the loopback address replicas bind.
        python: the interpreter that runs them (this one by default).
        server_args: extra ``python -m loopml.serve`` flags (``--max-batch-size 64``).
        tick_s: how often the supervisor looks at every replica.
        start_timeout_s: a replica not ready by then is killed (a failed start).
        probe_timeout_s: timeout of one readiness probe.
        backoff_initial_s, backoff_max_s: restart delay after a crash, doubling per
            consecutive crash up to the cap.
        stable_after_s: a replica ready this long before it crashed restarts at once.
        failed_after: consecutive failed starts before a revision is reported failed.
        drain_grace_s: how long a replica out of the routes still counts requests
            starting on it, before an in-flight count of zero means it is idle.
        drain_timeout_s: the longest a replica drains before it is stopped anyway.
        stop_timeout_s: SIGTERM, then SIGKILL after this long.
        log_max_bytes: ``replicas.log`` is rotated (one old copy) past this size.
        log_url: the platform's address; when set, replicas log their predictions there
            (``--log-url``, with the deployment's project and the revision's role). The
            platform leaves it unset: its gateway logs every answer itself (a replica
            killed with answers still queued would lose them).
        log_close_timeout_s: how long a stopping replica may take to post the predictions
            it still holds (the platform is local: when it does not answer by then, it is
            gone, and waiting longer would only delay the stop).
        autoscale: when replicas are added and removed between the deployment's bounds.
    """

    host: str = "127.0.0.1"
    python: str | None = None
    server_args: tuple[str, ...] = ("--graceful-shutdown-s", "10")
    tick_s: float = 0.1
    start_timeout_s: float = 120.0
    probe_timeout_s: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_after_s: float = 10.0
    failed_after: int = 3
    drain_grace_s: float = 0.5
    drain_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0
    log_max_bytes: int = 10 * 1024 * 1024
    log_url: str | None = None
    log_close_timeout_s: float = 3.0
    autoscale: AutoscalePolicy = field(default_factory=AutoscalePolicy)
