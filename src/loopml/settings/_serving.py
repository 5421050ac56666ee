"""The settings sections of serving and deployment: the Kubernetes target, the gateway, the
local target and its autoscaler, the control plane, the pipeline worker; and monitoring's."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from loopml.core.alerts import AlertRuleSpec, Comparator, Severity
from loopml.core.errors import ValidationError
from loopml.core.executors import ExecutorConfig, LocalExecutorConfig
from loopml.core.window_sizes import usage_seconds
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


class DefaultAlertRule(_Section):
    """An alert rule the monitor creates for every new deployment, named
    ``DEPLOYMENT-SUFFIX`` (see ``loopml.core.alerts`` for the metrics)."""

    suffix: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,20}$", description="The name's suffix.")
    metric: str = Field(description="The metric it watches (`loopml alerts create --help`).")
    comparator: Comparator = ">"
    threshold: float = Field(allow_inf_nan=False)
    for_s: float = Field(default=0.0, ge=0, le=30 * 86_400)
    window: str = Field(default="1h", pattern=r"^[1-9][0-9]{0,4}[mhd]$")
    severity: Severity = "warning"

    @model_validator(mode="after")
    def _valid_rule(self) -> DefaultAlertRule:
        # The rule it makes must be valid (a known metric, a clear threshold on the resolved
        # side): checked by the rule's own model, not a copy of its checks.
        fields = self.model_dump(exclude={"suffix"})
        AlertRuleSpec(name=f"d-{self.suffix}", deployment="d", **fields)
        return self


def _default_rules() -> list[DefaultAlertRule]:
    return [
        DefaultAlertRule(
            suffix="errors", metric="error_rate", threshold=0.05, for_s=300, severity="warning"
        ),
        DefaultAlertRule(suffix="latency", metric="latency_p99_ms", threshold=1000, for_s=300),
        DefaultAlertRule(suffix="restarts", metric="restarts", threshold=2, severity="critical"),
        DefaultAlertRule(suffix="drift", metric="drift_share", threshold=0.5, for_s=600),
    ]


class MonitorSettings(_Section):
    """Monitoring: windows over the prediction log, drift, live quality and alerts."""

    enabled: bool = Field(
        default=True, description="Run the monitor loop inside the API server (`loopml up`)."
    )
    interval_s: float = Field(
        default=30.0, gt=0, le=86_400, description="How often the monitor reads what arrived (s)."
    )
    windows: list[str] = Field(
        default_factory=lambda: ["1h", "1d"],
        min_length=1,
        max_length=4,
        description="Tumbling window sizes: a number and a unit, m, h or d (at least 1m). "
        "Drift, live quality, canaries and alert rules read the smallest.",
    )
    usage_window: str = Field(
        default="1m",
        max_length=8,
        description="The size of the usage-only windows the deployment page's charts draw "
        "(requests, errors, latency, callers; no drift or quality): smaller than the "
        "smallest of `windows` and dividing it. Empty: none. Left at its default while "
        "`windows` already has a size of 1m, it is off (those windows draw the line).",
    )
    lag_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Rows are read up to this long before now, so that the prediction log's "
        "batched appends have landed (s).",
    )
    backfill_s: float = Field(
        default=86_400.0,
        ge=0,
        description="On its first look at a deployment, how far back the monitor reads (s).",
    )
    label_horizon_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="Labels are joined to predictions at most this old when the label "
        "arrives (s); older ones are ignored.",
    )
    retention_days: float = Field(
        default=90.0, gt=0, description="Windows that ended longer ago than this are deleted."
    )
    usage_retention_days: float = Field(
        default=2.0,
        gt=0,
        description="Usage-only windows (`usage_window`) that ended longer ago than this are "
        "deleted: 1,440 a day per model version at 1m; the charts of longer periods read "
        "the smallest of `windows`.",
    )
    prediction_retention_days: float = Field(
        default=0.0,
        ge=0,
        description="Prediction-log and feedback rows older than this are deleted from each "
        "deployment's lake tables, once an hour, by the monitor; never rows it has not yet "
        "counted into windows, nor predictions a label may still join (label_horizon_s). "
        "Windows stay. 0 keeps them forever; `loopml tables vacuum` frees the files.",
    )
    drift_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of drifted input columns at which a window's input has drifted, "
        "besides at least one (0: any one column that drifted).",
    )
    drift_min_labels: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Labels joined to a drifted model version's answers made since its "
        "drift's onset before the episode emits `drift.labelled` (what a retrain on drift "
        "should be triggered by); again at twice the count after a refused retrain.",
    )
    drift_p_value: float = Field(
        default=0.001,
        gt=0,
        lt=1,
        description="The drift false-alarm rate: the chance that a window of unshifted "
        "traffic is called drifted at any of its looks or by the sequential test, whatever "
        "its size and however often the monitor reads it (the window is judged again as its "
        "rows grow by 10 %, at most 128 times, the looks sharing what the sequential test "
        "leaves, `drift_sequential_share`); within a look each column is tested (KS, "
        "chi-square) at its share over the number of columns.",
    )
    drift_sequential_share: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="The share of `drift_p_value` spent by the sequential test over each "
        "window's rows in the order they were answered (CUSUMs: a shift in the middle of a "
        "busy hour seen within about 50 rows); the looks spend the rest. 0 turns it off.",
    )
    drift_distance: float = Field(
        default=0.1, gt=0, description="Wasserstein (normed) and Jensen-Shannon threshold."
    )
    small_reference: int = Field(
        default=1000,
        ge=1,
        description="Reference rows up to which KS / chi-square decide; above, Wasserstein / "
        "Jensen-Shannon.",
    )
    webhook_allow: list[str] = Field(
        default_factory=list,
        description="Hosts or networks (CIDR) that alert webhooks may reach although they are "
        "loopback, link-local or private; every other such target is refused.",
    )
    webhook_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Timeout of one webhook attempt (s)."
    )
    webhook_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts per webhook notification."
    )
    default_rules: list[DefaultAlertRule] = Field(
        default_factory=_default_rules,
        max_length=20,
        description="Alert rules the monitor creates for each new deployment, on its first "
        "round after the deployment appears, named DEPLOYMENT-SUFFIX (by default: `errors`, "
        "error rate over 5 % for 5 minutes; `latency`, p99 over 1 s for 5 minutes; "
        "`restarts`, more than 2 replica crashes in the hour, critical; `drift`, more than "
        "half of the serving version's features drifted over the last hour, for 10 "
        "minutes). A rule deleted afterwards stays deleted; `[]` creates none.",
    )

    @model_validator(mode="after")
    def _valid_usage_window(self) -> MonitorSettings:
        try:
            if self.usage_size() is None:
                self.usage_window = ""
        except ValidationError as error:
            raise ValueError(str(error)) from None
        return self

    def usage_size(self) -> tuple[str, int] | None:
        """The usage-only size and its seconds; ``None`` when off: empty, or left at its
        default where it does not fit `windows` (which has 1m already, or is invalid: the
        monitor says so).

        Raises:
            ValidationError: a size set that is invalid or not smaller than the smallest of
                `windows` and a divisor of it.
        """
        if not self.usage_window:
            return None
        try:
            return self.usage_window, usage_seconds(self.usage_window, self.windows)
        except ValidationError:
            if "usage_window" in self.model_fields_set:
                raise
            return None
