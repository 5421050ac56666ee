"""The settings sections of serving and deployment: the Kubernetes target, the gateway, the
local target and its autoscaler, the control plane, the pipeline worker (the monitor's are
in ``_monitor``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from loopml.core.executors import ExecutorConfig, LocalExecutorConfig
from loopml.settings._base import _MiB, _Section


class KubernetesSettings(_Section):
    """The Kubernetes deploy target: off until enabled, and then used by deployments that
    ask for `target: kubernetes` (see docs/kubernetes.md)."""

    enabled: bool = Field(default=False, description="Offer the kubernetes target to deployments.")
    image: str = Field(
        default="loopml:latest",
        min_length=1,
        max_length=500,
        description="The model-server image (built from the repository's Dockerfile).",
    )
    platform_url: str | None = Field(
        default=None,
        description="This platform's URL as pods reach it (to fetch packages and log "
        "predictions); required when enabled.",
    )
    namespace: str = Field(
        default="default",
        pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        description="The namespace deployments are applied to.",
    )
    kserve: bool = Field(
        default=False,
        description="Render KServe InferenceServices (scale to zero, canary percentages) "
        "instead of Deployment, Service and HorizontalPodAutoscaler.",
    )
    gateway_parent: str | None = Field(
        default=None,
        max_length=317,
        pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="A Gateway API Gateway, `name` or `namespace/name`: each deployment also "
        "gets an HTTPRoute attached to it that splits traffic by the exact percentages and "
        "mirrors it to the shadow (see docs/kubernetes.md). Unset: no HTTPRoute. Not with "
        "kserve.",
    )
    kubeconfig: Path | None = Field(
        default=None, description="A kubeconfig file; the default one when omitted."
    )
    context: str | None = Field(default=None, description="The kubeconfig context to use.")
    in_cluster: bool = Field(
        default=False, description="Use the service account of the pod loopml runs in."
    )
    token_secret: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
        description="A Secret in the namespace whose key `token` holds an API token the "
        "pods' package download sends (needed when auth.enabled: a viewer token of the "
        "deployments' projects).",
    )


class GatewaySettings(_Section):
    """The gateway in front of every deployment's replicas (see docs/serving.md)."""

    activation_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="The longest a request waits for a deployment scaled to zero (or starting) "
        "to get a ready replica; then 503 with Retry-After.",
    )
    connect_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="Connecting to a replica; then another is tried."
    )
    timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="The longest a replica may take to answer (504)."
    )
    max_connections: int = Field(
        default=256, ge=1, le=65536, description="The connection pool's bound over all replicas."
    )
    max_shadow_inflight: int = Field(
        default=64,
        ge=0,
        le=65536,
        description="Shadow copies in flight at once; more are dropped (and counted).",
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="A port of its own for deployments' traffic, served by the gateway "
        "processes (`python -m loopml.serve.gateway`, supervised by `loopml up`); the platform "
        "keeps `server.port` (which serves deployments too, through its own gateway). Unset, "
        "see `gateway.front`.",
    )
    front: bool = Field(
        default=True,
        description="With `gateway.port` unset: the gateway processes own `server.port`, in "
        "front of the platform. They serve deployments' traffic themselves and pass every "
        "other request (API, portal, uploads) to the platform, which listens on a loopback "
        "port of its own; `loopml up` opens one port. `false`: one process, the gateway "
        "inside the platform's.",
    )
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Gateway processes sharing `gateway.port` (SO_REUSEPORT), or `server.port` "
        "with `gateway.front`: one per core the serving traffic may use.",
    )


class LocalSettings(_Section):
    """The local deploy target: model-server processes on this machine, supervised."""

    host: str = Field(default="127.0.0.1", description="The loopback address replicas bind.")
    python: str | None = Field(
        default=None, description="The interpreter that runs replicas (this one by default)."
    )
    server_args: list[str] = Field(
        default=["--graceful-shutdown-s", "10"],
        max_length=64,
        description="Extra `python -m loopml.serve` flags for every replica "
        "(for example `--max-batch-size 64`).",
    )
    tick_s: float = Field(
        default=0.1, gt=0, le=60, description="How often the supervisor looks at every replica."
    )
    start_timeout_s: float = Field(
        default=120.0, gt=0, le=3600, description="A replica not ready by then is killed."
    )
    probe_timeout_s: float = Field(
        default=1.0, gt=0, le=60, description="Timeout of one readiness probe."
    )
    backoff_initial_s: float = Field(
        default=0.5, gt=0, le=600, description="Restart delay after a crash (doubles per crash)."
    )
    backoff_max_s: float = Field(
        default=30.0, gt=0, le=3600, description="The cap of the restart delay."
    )
    stable_after_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="A replica ready this long before it crashed restarts at once.",
    )
    failed_after: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Consecutive failed starts before a revision is reported failed.",
    )
    drain_grace_s: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="How long a replica out of the routes still counts requests starting on it.",
    )
    drain_timeout_s: float = Field(
        default=30.0, ge=0, le=3600, description="The longest a replica drains before it stops."
    )
    stop_timeout_s: float = Field(
        default=15.0, gt=0, le=3600, description="SIGTERM, then SIGKILL after this long."
    )
    log_max_bytes: int = Field(
        default=10 * _MiB,
        ge=4096,
        description="A deployment's `replicas.log` is rotated (one old copy) past this size.",
    )


class AutoscaleSettings(_Section):
    """When the local target adds or removes replicas between a deployment's bounds."""

    target_inflight: float = Field(
        default=8.0,
        gt=0,
        le=100000,
        description="Requests in flight per replica above which a replica is added.",
    )
    window_s: float = Field(
        default=2.0, ge=0, le=3600, description="The moving average's time constant."
    )
    up_cooldown_s: float = Field(
        default=5.0, ge=0, le=3600, description="The least time between two scale-ups."
    )
    down_after_s: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="How long the load must fit one replica fewer before one stops.",
    )


class DeploymentsSettings(_Section):
    """The deployments' control plane."""

    reconcile_interval_s: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="How often the reconciler re-resolves aliases and re-applies deployments.",
    )
    scrape_targets: str = Field(
        default="prometheus/targets.json",
        max_length=1000,
        description="Where the local target's replicas are listed for Prometheus "
        "(`file_sd_configs`), relative to the home unless absolute; empty: not written.",
    )


class CanarySettings(_Section):
    """Automatic canaries, judged against the primary from the monitor's figures.

    Rolled back when worse by a margin, promoted when not after a time (see
    docs/deployments.md); a deployment's `canary` fields override these."""

    auto: bool = Field(
        default=False,
        description="Judge every canary automatically (a deployment's `canary.auto` wins).",
    )
    interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="How often canaries are judged (s)."
    )
    max_error_rate_increase: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Rolled back when its error rate exceeds the primary's by more (a share).",
    )
    max_latency_ratio: float = Field(
        default=1.5,
        ge=1,
        le=1000,
        description="Rolled back when its p95 latency is more than this many times the "
        "primary's (and slower by more than `latency_slack_ms`).",
    )
    latency_slack_ms: float = Field(
        default=20.0,
        ge=0,
        le=600_000,
        description="A p95 latency difference under this many ms never rolls a canary back.",
    )
    max_quality_drop: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Rolled back when its live accuracy (R2 for regression) is lower by more.",
    )
    min_requests: int = Field(
        default=100, ge=1, description="Requests each revision must serve before any decision."
    )
    min_labels: int = Field(
        default=50, ge=1, description="Labels each revision needs before quality is compared."
    )
    promote_after_s: float = Field(
        default=3600.0,
        ge=0,
        le=30 * 86_400,
        description="Promoted once judged this long (s) without being worse.",
    )


class WorkerSettings(_Section):
    """Pipeline workers: `loopml worker` (its flags override these) and `loopml up`'s."""

    concurrency: int = Field(default=2, ge=1, le=64, description="Steps run at once.")
    lease_s: float = Field(
        default=30.0, gt=0, le=3600, description="How long a claim lasts without a heartbeat."
    )
    heartbeat_s: float = Field(
        default=2.0, gt=0, le=1200, description="How often a running step's lease is renewed."
    )
    poll_s: float = Field(
        default=0.5, gt=0, le=60, description="How often an idle worker looks for work."
    )
    sweep_s: float = Field(
        default=2.0, gt=0, le=3600, description="How often expired leases are settled."
    )
    step_log_max_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=4096,
        le=1 << 30,
        description="The most of a step attempt's output kept with the run: past it, its "
        "start (a quarter) and its newest end, with a line saying how many bytes were left out.",
    )
    executor: ExecutorConfig = Field(
        default_factory=LocalExecutorConfig,
        description='Where steps run: `{type = "local"}` (a child process of the worker per '
        "step, the default; also `cpus` (what the steps' `resources.cpus` may add up to; "
        "default: the larger of the CPU count and `concurrency`), `python`, "
        "`stop_grace_s = 3.0`, `fork_server = true` (forked from a process with loopml "
        'imported: 0.5 s less a step)) or `{type = "ray", address = "10.0.0.5:6379"}` (a Ray task '
        "per step on that cluster; also `num_cpus = 1.0` and "
        "custom `resources` per task, `python`, `stop_grace_s = 3.0`; needs "
        "`pip install 'loopml[ray]'`, see docs/pipelines.md); in the environment as JSON, "
        '`LOOPML_WORKER_EXECUTOR=\'{"type": "ray"}\'`.',
    )
