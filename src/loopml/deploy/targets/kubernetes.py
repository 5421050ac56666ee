"""The Kubernetes deploy target: a deployment as plain Kubernetes objects, or a KServe
InferenceService; printed (``to_yaml``) or applied through the kubernetes client.

Per revision that takes traffic, and for the shadow revision, ``render`` gives:

* a **Deployment** ``<name>-r<revision>``: an initContainer runs
  ``python -m loopml.sdk.fetch`` to download the version's package from the platform into
  an emptyDir, verified against the registry's manifest hash; the server container runs
  ``python -m loopml.serve`` on it (port 8080, probes on ``/v2/health/ready`` and
  ``/v2/health/live``, Prometheus scrape annotations for ``/metrics``), as a non-root user
  on a read-only root filesystem with every capability dropped. ``spec.replicas`` is left
  to the autoscaler.
* a **Service** of the same name (one revision, for a gateway or mesh to route to);
* a **HorizontalPodAutoscaler** (``autoscaling/v2``) between ``min_replicas`` and
  ``max_replicas`` on CPU utilization. An HPA cannot scale to zero, so ``min_replicas`` 0
  keeps one replica here (the HPA says so in an annotation): scale-to-zero needs KServe on
  Knative, ``kserve=True``.

and one **Service** ``<name>`` over the pods of every revision with traffic. Kubernetes
spreads a Service's requests over ready pods, not by percent: with a canary the split
follows the replica counts. The shadow's pods are not behind that Service.

With ``gateway_parent`` (a Gateway API ``Gateway``, ``name`` or ``namespace/name``) it also
renders an **HTTPRoute** ``<name>`` attached to that Gateway (``_k8s_routes``): the
per-revision Services weighted by the exact percentages, and the shadow's Service as a
``RequestMirror``, so the cluster's data plane splits and mirrors. Without it, no HTTPRoute.

``kserve=True`` renders a ``serving.kserve.io/v1beta1`` **InferenceService** instead: the
same containers as a custom predictor, ``minReplicas`` (0 scales to zero), ``maxReplicas``,
a concurrency ``scaleTarget``, and for a canary the canary revision with
``canaryTrafficPercent`` (KServe sends the rest to the previous ready revision); the shadow
gets an InferenceService of its own, ``<name>-shadow``. KServe routes its InferenceServices
itself, so ``gateway_parent`` is refused with it.

Output is deterministic: the same deployment gives the same objects in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from loopml.core.deployments import Deployment
from loopml.core.errors import ConflictError, ValidationError
from loopml.core.resources import ReplicaSample
from loopml.deploy.targets._k8s_client import ClusterApi, connect
from loopml.deploy.targets._k8s_manifests import (
    DEPLOYMENT_LABEL,
    MANAGED_BY_LABEL,
    PROJECT_LABEL,
    deployment_labels,
    inference_services,
    revision_objects,
    selector_of,
    served_revisions,
    stable_service,
)
from loopml.deploy.targets._k8s_names import GatewayParent, validate_namespace
from loopml.deploy.targets._k8s_pod import Manifest, RenderOptions
from loopml.deploy.targets._k8s_resources import PodMeter
from loopml.deploy.targets._k8s_routes import http_route
from loopml.deploy.targets.base import RevisionPackage

__all__ = ["KubernetesTarget", "Manifest", "render", "to_yaml"]

DEFAULT_CPU_UTILIZATION = 70
DEFAULT_CONCURRENCY_TARGET = 16
_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_IMAGE = re.compile(r"^[^\s]{1,500}$")
# What the target creates, in the order it creates them; deleted in the reverse order.
_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
)


def _options(
    image: str,
    platform_url: str,
    namespace: str,
    cpu_utilization: int,
    concurrency_target: int,
    token_secret: str | None = None,
    gateway_parent: str | None = None,
    kserve: bool = False,
) -> RenderOptions:
    if not isinstance(image, str) or not _IMAGE.fullmatch(image):
        raise ValidationError(
            f"invalid container image {repr(image)[:80]}: expected a reference such as "
            "'registry.example.com/loopml:0.1.0'",
            details={"field": "image"},
        )
    if not isinstance(platform_url, str) or not _URL.fullmatch(platform_url):
        raise ValidationError(
            f"invalid platform URL {repr(platform_url)[:80]}: expected the http(s) address "
            "the pods reach the platform at, such as 'http://loopml.loopml.svc:8765'",
            details={"field": "platform_url"},
        )
    for field, value, low, high in (
        ("cpu_utilization", cpu_utilization, 1, 100),
        ("concurrency_target", concurrency_target, 1, 10_000),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValidationError(
                f"invalid {field} {value!r}: expected an integer from {low} to {high}",
                details={"field": field},
            )
    if gateway_parent is not None and kserve:
        raise ValidationError(
            "gateway_parent renders a Gateway API HTTPRoute for plain Kubernetes objects; "
            "KServe routes its InferenceServices itself: leave out one of gateway_parent "
            "and kserve",
            details={"field": "gateway_parent"},
        )
    return RenderOptions(
        image=image,
        platform_url=platform_url.rstrip("/"),
        namespace=validate_namespace(namespace),
        cpu_utilization=cpu_utilization,
        concurrency_target=concurrency_target,
        token_secret=token_secret,
        gateway=GatewayParent.parse(gateway_parent) if gateway_parent is not None else None,
    )


def render(
    deployment: Deployment,
    *,
    image: str,
    platform_url: str,
    namespace: str = "default",
    kserve: bool = False,
    packages: Iterable[RevisionPackage] = (),
    cpu_utilization: int = DEFAULT_CPU_UTILIZATION,
    concurrency_target: int = DEFAULT_CONCURRENCY_TARGET,
    token_secret: str | None = None,
    gateway_parent: str | None = None,
) -> list[Manifest]:
    """The Kubernetes objects that run ``deployment``, as plain dicts.

    Args:
        deployment: the deployment, with its revisions, traffic and shadow.
        image: the loopml image the pods run (see the Dockerfile).
        platform_url: where the pods download packages from (the platform's API).
        namespace: the namespace of every object.
        kserve: a KServe InferenceService instead of Deployment + Service + HPA.
        packages: the revisions' packages; a revision whose package is given has its
            manifest hash pinned in the pod spec (``apply`` always pins). Without one, the
            pod serves the hash the registry records when the pod starts.
        cpu_utilization: the autoscaler's CPU target, percent of the request.
        concurrency_target: KServe's in-flight requests per replica to scale at.
        token_secret: a Secret whose ``token`` the package download sends (auth on).
        gateway_parent: the Gateway API Gateway (``name`` or ``namespace/name``) an
            HTTPRoute for the deployment attaches to; ``None`` renders no HTTPRoute.

    Raises:
        ValidationError: no revision has traffic, traffic names an unknown revision, a
            package does not match its revision, more than two revisions share traffic
            with ``kserve``, ``gateway_parent`` with ``kserve``, or an invalid image, URL,
            namespace or gateway.
    """
    options = _options(
        image,
        platform_url,
        namespace,
        cpu_utilization,
        concurrency_target,
        token_secret,
        gateway_parent,
        kserve,
    )
    served = served_revisions(deployment, {p.revision: p for p in packages})
    if kserve:
        return inference_services(deployment, served, options)
    objects = [stable_service(deployment, served, options)]
    for one in served:
        objects += revision_objects(deployment, one, options)
    if options.gateway is not None:
        # Last: applied once the Services it routes to exist.
        objects.append(http_route(deployment, served, options, options.gateway))
    return objects


def to_yaml(manifests: Sequence[Manifest]) -> str:
    """The manifests as one multi-document YAML stream (what ``kubectl apply -f`` reads)."""
    import yaml  # type: ignore[import-untyped]

    class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True  # no &anchors/*aliases: each object reads on its own

    text: str = yaml.dump_all(
        manifests,
        Dumper=_Dumper,
        sort_keys=False,
        explicit_start=True,
        default_flow_style=False,
        allow_unicode=False,
        width=4096,
    )
    return text


class KubernetesTarget:
    """Runs deployments on a Kubernetes cluster (``DeployTarget``).

    The kubernetes client and the kubeconfig are loaded on the first ``apply``, ``delete``
    or ``ready_replicas``, never at construction, so rendering needs no cluster.

    Args:
        image: the loopml image the pods run.
        platform_url: the platform's address as the pods reach it.
        namespace: where the objects go.
        kserve: render KServe InferenceServices instead of Deployment + Service + HPA.
        gateway_parent: the Gateway (``name`` or ``namespace/name``) each deployment's
            HTTPRoute attaches to; ``None``: no HTTPRoutes (those left are deleted).
        kubeconfig: a kubeconfig file; ``None`` uses ``$KUBECONFIG`` or ``~/.kube/config``.
        context: the kubeconfig context; ``None`` for its current one.
        in_cluster: use the pod's service account (the platform runs in the cluster).
        field_manager: the server-side apply field manager.
        cpu_utilization: the autoscaler's CPU target, percent.
        concurrency_target: KServe's in-flight requests per replica.
        api: a ready ``ClusterApi`` to use instead of connecting.
    """

    name = "kubernetes"

    def __init__(
        self,
        *,
        image: str,
        platform_url: str,
        namespace: str = "default",
        kserve: bool = False,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        field_manager: str = "loopml",
        cpu_utilization: int = DEFAULT_CPU_UTILIZATION,
        concurrency_target: int = DEFAULT_CONCURRENCY_TARGET,
        token_secret: str | None = None,
        gateway_parent: str | None = None,
        api: ClusterApi | None = None,
    ) -> None:
        self._options = _options(
            image,
            platform_url,
            namespace,
            cpu_utilization,
            concurrency_target,
            token_secret,
            gateway_parent,
            kserve,
        )
        self.kserve = kserve
        self._kubeconfig = Path(kubeconfig) if kubeconfig is not None else None
        self._context = context
        self._in_cluster = in_cluster
        self._field_manager = field_manager
        self._api = api
        self._pods = PodMeter(self._options.namespace)

    @property
    def namespace(self) -> str:
        """The namespace the target's objects go to."""
        return self._options.namespace

    @property
    def gateway_parent(self) -> str | None:
        """The Gateway the HTTPRoutes attach to, ``namespace/name`` or ``name``."""
        parent = self._options.gateway
        if parent is None:
            return None
        return f"{parent.namespace}/{parent.name}" if parent.namespace else parent.name

    def render(
        self, deployment: Deployment, packages: Iterable[RevisionPackage] = ()
    ) -> list[Manifest]:
        """The objects ``apply`` would send (see ``render``)."""
        o = self._options
        return render(
            deployment,
            image=o.image,
            platform_url=o.platform_url,
            namespace=o.namespace,
            kserve=self.kserve,
            packages=packages,
            cpu_utilization=o.cpu_utilization,
            concurrency_target=o.concurrency_target,
            token_secret=o.token_secret,
            gateway_parent=self.gateway_parent,
        )

    def _cluster(self) -> ClusterApi:
        if self._api is None:
            self._api = connect(self._kubeconfig, self._context, self._in_cluster)
        return self._api

    def apply(self, deployment: Deployment, packages: list[RevisionPackage]) -> None:
        """Server-side apply every object of ``deployment`` (hashes pinned), then delete its
        objects that are no longer rendered (revisions without traffic); idempotent.

        Raises:
            ValidationError: a served revision has no package in ``packages``.
            ConflictError: an object of the same name exists and is not this deployment's.
            ConfigurationError: no usable kubeconfig, or KServe missing with ``kserve``.
            PermissionDeniedError: the credentials may not change these objects.
        """
        given = {package.revision for package in packages}
        needed = [s.revision.number for s in served_revisions(deployment, {})]
        missing = [number for number in needed if number not in given]
        if missing:
            raise ValidationError(
                f"the Kubernetes target needs the package of every revision it runs; none "
                f"given for revisions {missing} of deployment {deployment.name!r}",
                details={"revisions": missing},
            )
        manifests = self.render(deployment, packages)
        api = self._cluster()
        for manifest in manifests:
            self._check_owner(api, manifest, deployment)
        for manifest in manifests:
            api.apply(manifest, field_manager=self._field_manager)
        keep = {(m["kind"], m["metadata"]["name"]) for m in manifests}
        self._remove(api, deployment, keep)

    def _check_owner(self, api: ClusterApi, manifest: Manifest, deployment: Deployment) -> None:
        meta = manifest["metadata"]
        found = api.get(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        if found is None:
            return
        theirs: dict[str, Any] = (found.get("metadata") or {}).get("labels") or {}
        ours = deployment_labels(deployment)
        keys = (MANAGED_BY_LABEL, PROJECT_LABEL, DEPLOYMENT_LABEL)
        if any(theirs.get(key) != ours[key] for key in keys):
            owner = {key: theirs.get(key) for key in keys}
            raise ConflictError(
                f"{manifest['kind']} {meta['namespace']}/{meta['name']} already exists and "
                f"is not deployment {deployment.project}/{deployment.name}'s (its labels: "
                f"{owner}); rename the deployment, use another namespace, or remove that "
                "object",
                details={"kind": manifest["kind"], "name": meta["name"], "labels": owner},
            )

    def _remove(self, api: ClusterApi, deployment: Deployment, keep: set[tuple[str, str]]) -> None:
        selector = selector_of(deployment)
        for api_version, kind in reversed(_KINDS):
            for item in api.list(api_version, kind, self.namespace, selector):
                name = item["metadata"]["name"]
                if (kind, name) not in keep:
                    api.delete(api_version, kind, self.namespace, name)

    def delete(self, deployment: Deployment) -> None:
        """Delete every object labelled as this deployment's (their pods with them)."""
        self._remove(self._cluster(), deployment, set())

    def ready_replicas(self, deployment: Deployment) -> int:
        """Ready replicas of every revision: the Deployments' ``status.readyReplicas``, or
        with ``kserve`` the predictor pods that are Ready."""
        api, selector = self._cluster(), selector_of(deployment)
        if not self.kserve:
            found = api.list("apps/v1", "Deployment", self.namespace, selector)
            return sum(int((item.get("status") or {}).get("readyReplicas") or 0) for item in found)
        pods = api.list("v1", "Pod", self.namespace, selector)
        return sum(1 for pod in pods if _pod_ready(pod))

    def resources(self) -> list[ReplicaSample]:
        """Every running pod of the deployments in the namespace as a sample (see
        ``_k8s_resources``): state, restarts and uptime from the pods, CPU and memory from
        the metrics API when it answers. Empty, never an error, when the cluster cannot be
        reached (``unmeasured_reason`` says why)."""
        return self._pods.read(self._cluster)

    def unmeasured_reason(self) -> str:
        """Why the latest ``resources()`` measured nothing; empty when it measured."""
        return self._pods.reason


def _pod_ready(pod: Manifest) -> bool:
    status = pod.get("status") or {}
    conditions = status.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
