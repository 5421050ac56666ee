"""What the Kubernetes target reports about its pods: one ``ReplicaSample`` per running pod
of the deployments it manages, read from the pods' status and, when the cluster serves it,
the metrics API (``metrics.k8s.io/v1beta1`` PodMetrics, what ``kubectl top pod`` reads).

Each reading is two list calls in the target's namespace, whatever the number of
deployments: the pods labelled as loopml's model servers, and their PodMetrics (which carry
the pods' labels). From a pod:

* project, model: the pod's ``loopml.io/project`` and ``loopml.io/model`` annotations (the
  exact names), else its labels (pods rendered before those annotations);
* deployment, revision, version: its ``loopml.io/deployment``, ``loopml.io/revision`` and
  ``loopml.io/model-version`` labels;
* replica: its ordinal by pod name among the running pods of its revision;
* state: ``stopping`` once deleted, ``ready`` when its Ready condition holds, else
  ``starting``;
* restarts: the sum of its containers' ``restartCount``;
* uptime_s: since the model server's container started (``state.running.startedAt``: a
  container restart resets it, as a new process does on the local target), else since the
  pod did (``status.startTime``);
* cpu_percent, rss_bytes: the PodMetrics' usage summed over containers, cores x 100 and
  working-set bytes (what the kubelet counts against the memory limit).

A pod without PodMetrics (no metrics API, no permission to read it, or a pod too new for
metrics-server to have a reading) is reported with ``measured`` false and CPU and memory 0.
``pid`` is ``None`` and ``connections`` 0: neither is visible through the API.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from loopml.core.errors import ConfigurationError, LoopmlError
from loopml.core.resources import ReplicaSample
from loopml.deploy.targets._k8s_client import ClusterApi, Manifest
from loopml.deploy.targets._k8s_manifests import (
    APP,
    APP_LABEL,
    DEPLOYMENT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MODEL_LABEL,
    MODEL_NOTE,
    PROJECT_LABEL,
    PROJECT_NOTE,
    REVISION_LABEL,
    VERSION_LABEL,
)

log = logging.getLogger("loopml.deploy.kubernetes")

POD_SELECTOR = f"{APP_LABEL}={APP},{MANAGED_BY_LABEL}={MANAGED_BY}"
METRICS_API = "metrics.k8s.io/v1beta1"
WARN_EVERY_S = 60.0
_SERVER_CONTAINERS = ("model-server", "kserve-container")
_DONE_PHASES = ("Succeeded", "Failed")  # evicted or finished pods: no longer replicas

# <number><suffix>, the suffix binary (Ki..Ei), decimal (n..E) or an exponent (e3, E-2).
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|([eE][+-]?[0-9]+))?$"
)
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity (``250m``, ``1.5``, ``128Mi``, ``1G``, ``1e3``) as a
    number of base units (cores, bytes).

    Raises:
        ValueError: ``text`` is not a quantity.
    """
    found = _QUANTITY.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, suffix, exponent = found.groups()
    try:
        value = Decimal(number)
        if exponent:
            return value.scaleb(int(exponent[1:]))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from exc
    return value * _SUFFIXES[suffix] if suffix else value


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _started(pod: Manifest) -> datetime | None:
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        if container.get("name") in _SERVER_CONTAINERS:
            running = (container.get("state") or {}).get("running") or {}
            if (at := _when(running.get("startedAt"))) is not None:
                return at
    return _when(status.get("startTime"))


def pod_state(pod: Manifest) -> str:
    """``stopping`` once deleted, ``ready`` when its Ready condition holds, else ``starting``."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "stopping"
    conditions = (pod.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return "ready"
    return "starting"


def _usage(item: Manifest) -> tuple[float, int]:
    cores, memory = Decimal(0), Decimal(0)
    for container in item.get("containers") or []:
        usage = container.get("usage") or {}
        cores += parse_quantity(str(usage.get("cpu", "0")))
        memory += parse_quantity(str(usage.get("memory", "0")))
    return round(float(cores * 100), 2), int(memory)


class PodMeter:
    """Reads the pods of one namespace; warns about an unreachable API or a missing metrics
    API at most once a minute each (``clock``: monotonic seconds; ``now``: the time pods'
    start times are measured against)."""

    def __init__(
        self,
        namespace: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.namespace = namespace
        self.reason = ""
        self._clock = clock
        self._now = now
        self._warned: dict[str, float] = {}

    def _warn(self, key: str, message: str) -> None:
        at = self._clock()
        last = self._warned.get(key)
        if last is None or at - last >= WARN_EVERY_S:
            self._warned[key] = at
            log.warning("%s", message)

    def read(self, cluster: Callable[[], ClusterApi]) -> list[ReplicaSample]:
        """Every running pod of the namespace's loopml deployments as a sample; none when
        the cluster cannot be reached (``reason`` then says why)."""
        try:
            api = cluster()
        except ConfigurationError as exc:
            self.reason = f"the kubernetes target only renders manifests here: {exc.message}"
            return []
        try:
            pods = api.list("v1", "Pod", self.namespace, POD_SELECTOR)
        # The monitor round must survive whatever the cluster (or its client) does.
        except Exception as exc:
            self.reason = f"cannot list the pods in namespace {self.namespace!r}: {exc}"[:500]
            self._warn("pods", f"replica resources on Kubernetes not measured: {self.reason}")
            return []
        self.reason = ""
        try:
            return self._samples(pods, self._metrics(api))
        except Exception as exc:
            self._warn("pods", f"cannot read the pods in namespace {self.namespace!r}: {exc}")
            return []

    def _metrics(self, api: ClusterApi) -> dict[str, tuple[float, int]]:
        try:
            found = api.list(METRICS_API, "PodMetrics", self.namespace, POD_SELECTOR)
            return {item["metadata"]["name"]: _usage(item) for item in found}
        except (LoopmlError, ValueError, KeyError, TypeError) as exc:
            self._warn(
                "metrics",
                f"CPU and memory of the pods in namespace {self.namespace!r} not measured: "
                f"the metrics API ({METRICS_API}, metrics-server) did not answer: {exc}"[:500],
            )
            return {}

    def _samples(
        self, pods: list[Manifest], usage: dict[str, tuple[float, int]]
    ) -> list[ReplicaSample]:
        running = [p for p in pods if (p.get("status") or {}).get("phase") not in _DONE_PHASES]
        running.sort(key=lambda p: p["metadata"]["name"])
        now = self._now()
        seen: dict[tuple[str, str, int], int] = {}
        samples: list[ReplicaSample] = []
        for pod in running:
            sample = self._sample(pod, usage, now, seen)
            if sample is not None:
                samples.append(sample)
        return samples

    def _sample(
        self,
        pod: Manifest,
        usage: dict[str, tuple[float, int]],
        now: datetime,
        seen: dict[tuple[str, str, int], int],
    ) -> ReplicaSample | None:
        meta = pod["metadata"]
        labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
        project = notes.get(PROJECT_NOTE) or labels.get(PROJECT_LABEL)
        model = notes.get(MODEL_NOTE) or labels.get(MODEL_LABEL)
        deployment, revision = labels.get(DEPLOYMENT_LABEL), labels.get(REVISION_LABEL, "")
        version = labels.get(VERSION_LABEL, "")
        if not (project and model and deployment and revision.isdigit() and version.isdigit()):
            return None  # not a revision's pod (a label was removed by hand)
        slot = (project, deployment, int(revision))
        index = seen[slot] = seen.get(slot, -1) + 1
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        started = _started(pod)
        cpu, memory = usage.get(meta["name"], (0.0, 0))
        return ReplicaSample(
            project=project,
            deployment=deployment,
            model=model,
            version=int(version),
            revision=int(revision),
            replica=index,
            pid=None,
            state=pod_state(pod),
            cpu_percent=cpu,
            rss_bytes=memory,
            connections=0,
            restarts=sum(int(c.get("restartCount") or 0) for c in statuses),
            uptime_s=round(max((now - started).total_seconds(), 0.0), 3) if started else 0.0,
            measured=meta["name"] in usage,
        )
