"""The objects the Kubernetes target renders, as plain dicts built in one fixed order.

Per served revision: a Deployment (an initContainer fetches and verifies the package into
an emptyDir, the server container serves it), a Service and a HorizontalPodAutoscaler; per
deployment, one Service over every revision that takes traffic. The KServe variant is one
InferenceService (plus one for the shadow). ``kubernetes.py`` documents the choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopml.core.deployments import Deployment, Revision
from loopml.core.errors import ValidationError
from loopml.deploy.targets._k8s_names import dns_label, label_value
from loopml.deploy.targets._k8s_pod import (
    PORT,
    Manifest,
    RenderOptions,
    Served,
    pod_spec,
)
from loopml.deploy.targets.base import RevisionPackage

SERVICE_PORT = 80
# A Deployment's pods are named <deployment>-<10>-<5>; at 47 characters they stay a valid
# 63-character hostname. Knative derives "<name>-predictor-00001-deployment-..." from an
# InferenceService's name, hence its shorter bound.
REVISION_NAME_LIMIT = 47
ISVC_NAME_LIMIT = 45

APP_LABEL = "app.kubernetes.io/name"
APP = "loopml-model"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "loopml"
PROJECT_LABEL = "loopml.io/project"
DEPLOYMENT_LABEL = "loopml.io/deployment"
REVISION_LABEL = "loopml.io/revision"
SERVING_LABEL = "loopml.io/serving"
MODEL_LABEL = "loopml.io/model"
VERSION_LABEL = "loopml.io/model-version"
# A label value may be cut and hashed (``label_value``); the pods also carry the exact
# project and model names as annotations, for the resource readings to name them.
PROJECT_NOTE = "loopml.io/project"
MODEL_NOTE = "loopml.io/model"

_HPA_ZERO_NOTE = (
    "min_replicas 0 asks for scale-to-zero, which a HorizontalPodAutoscaler cannot do: "
    "it keeps 1 replica; render with kserve=True (KServe on Knative) to scale to zero"
)
_SCRAPE = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(PORT),
    "prometheus.io/path": "/metrics",
}


def served_revisions(
    deployment: Deployment, packages: Mapping[int, RevisionPackage]
) -> list[Served]:
    """The revisions with traffic, by number, then the shadow (unless it also has traffic)."""
    by_number = {revision.number: revision for revision in deployment.revisions}
    live = sorted(number for number, percent in deployment.traffic.items() if percent > 0)
    if not live:
        raise ValidationError(
            f"deployment {deployment.name!r} sends no traffic to any revision: nothing to "
            "render (give a revision traffic, or delete the deployment)",
            details={"deployment": deployment.name},
        )
    numbers = [*live]
    if deployment.shadow_revision is not None and deployment.shadow_revision not in live:
        numbers.append(deployment.shadow_revision)
    unknown = [number for number in numbers if number not in by_number]
    if unknown:
        raise ValidationError(
            f"deployment {deployment.name!r} routes to revisions {unknown} it does not list",
            details={"deployment": deployment.name, "revisions": unknown},
        )
    served: list[Served] = []
    for number in numbers:
        package = packages.get(number)
        revision = by_number[number]
        if package is not None and (package.model, package.version) != (
            revision.model,
            revision.version,
        ):
            raise ValidationError(
                f"the package given for revision {number} is {package.model}/{package.version}"
                f", but the revision serves {revision.model}/{revision.version}",
                details={"revision": number},
            )
        served.append(
            Served(
                revision=revision,
                live=number in live,
                percent=deployment.traffic.get(number, 0),
                manifest_sha256=package.manifest_sha256.lower() if package else None,
            )
        )
    return served


def revision_name(deployment: Deployment, revision: Revision) -> str:
    """The name of a revision's Deployment, Service and HorizontalPodAutoscaler."""
    return dns_label(f"{deployment.name}-r{revision.number}", REVISION_NAME_LIMIT)


def deployment_labels(deployment: Deployment) -> dict[str, str]:
    """The labels every object of ``deployment`` carries (and ``delete`` selects by)."""
    return {
        APP_LABEL: APP,
        "app.kubernetes.io/instance": deployment.name,
        "app.kubernetes.io/component": "model-server",
        MANAGED_BY_LABEL: MANAGED_BY,
        PROJECT_LABEL: label_value(deployment.project),
        DEPLOYMENT_LABEL: deployment.name,
    }


def selector_of(deployment: Deployment) -> str:
    """A label selector matching every object of ``deployment``."""
    keys = (APP_LABEL, MANAGED_BY_LABEL, PROJECT_LABEL, DEPLOYMENT_LABEL)
    labels = deployment_labels(deployment)
    return ",".join(f"{key}={labels[key]}" for key in keys)


def _pod_selector(deployment: Deployment, revision: Revision) -> dict[str, str]:
    return {
        APP_LABEL: APP,
        PROJECT_LABEL: label_value(deployment.project),
        DEPLOYMENT_LABEL: deployment.name,
        REVISION_LABEL: str(revision.number),
    }


def _revision_labels(deployment: Deployment, served: Served) -> dict[str, str]:
    revision = served.revision
    return {
        **deployment_labels(deployment),
        REVISION_LABEL: str(revision.number),
        MODEL_LABEL: label_value(revision.model),
        VERSION_LABEL: str(revision.version),
        SERVING_LABEL: "live" if served.live else "shadow",
    }


def _metadata(
    name: str, options: RenderOptions, labels: dict[str, str], annotations: dict[str, str]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": options.namespace, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _pod_annotations(deployment: Deployment, served: Served) -> dict[str, str]:
    return {**_SCRAPE, PROJECT_NOTE: deployment.project, MODEL_NOTE: served.revision.model}


def _revision_annotations(served: Served) -> dict[str, str]:
    revision = served.revision
    notes = {
        "loopml.io/model-ref": revision.ref,
        "loopml.io/role": revision.role if served.live else "shadow",
        "loopml.io/traffic-percent": str(served.percent),
    }
    if served.manifest_sha256:
        notes["loopml.io/manifest-sha256"] = served.manifest_sha256
    return notes


def revision_objects(
    deployment: Deployment, served: Served, options: RenderOptions
) -> list[Manifest]:
    """A revision's Deployment, Service and HorizontalPodAutoscaler."""
    name = revision_name(deployment, served.revision)
    labels = _revision_labels(deployment, served)
    selector = _pod_selector(deployment, served.revision)
    # No spec.replicas: the autoscaler owns it (a value here would be reset on every apply).
    workload: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, options, labels, _revision_annotations(served)),
        "spec": {
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": _pod_annotations(deployment, served),
                },
                "spec": pod_spec(deployment, served, options, knative=False),
            },
        },
    }
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, options, dict(labels), {}),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
    return [workload, service, _autoscaler(deployment, name, dict(labels), options)]


def _autoscaler(
    deployment: Deployment, name: str, labels: dict[str, str], options: RenderOptions
) -> Manifest:
    spec = deployment.spec
    low = max(1, spec.min_replicas)
    notes = {"loopml.io/scale-to-zero": _HPA_ZERO_NOTE} if spec.min_replicas == 0 else {}
    target = {"type": "Utilization", "averageUtilization": options.cpu_utilization}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(name, options, labels, notes),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": max(low, spec.max_replicas),
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }


def traffic_note(served: list[Served]) -> str:
    """``1=90,2=10``: revision=percent for the revisions with traffic."""
    return ",".join(f"{s.revision.number}={s.percent}" for s in served if s.live)


def stable_service(
    deployment: Deployment, served: list[Served], options: RenderOptions
) -> Manifest:
    """The deployment's own Service, over the pods of every revision with traffic."""
    selector = {
        APP_LABEL: APP,
        PROJECT_LABEL: label_value(deployment.project),
        DEPLOYMENT_LABEL: deployment.name,
        SERVING_LABEL: "live",
    }
    notes = {"loopml.io/traffic": traffic_note(served)}
    if sum(1 for s in served if s.live) > 1:
        notes["loopml.io/traffic-split"] = (
            "by ready pods, not by percent: the HTTPRoute of the same name splits by percent "
            "through the Gateway"
            if options.gateway is not None
            else "by ready pods, not by percent: route the per-revision Services with a "
            "gateway or service mesh for exact weights (kubernetes.gateway_parent renders a "
            "Gateway API HTTPRoute)"
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            dns_label(deployment.name), options, deployment_labels(deployment), notes
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def _canary_pair(live: list[Served], deployment: Deployment) -> tuple[Served, Served | None]:
    if len(live) == 1:
        return live[0], None
    if len(live) > 2:
        raise ValidationError(
            f"deployment {deployment.name!r} splits traffic over {len(live)} revisions; a "
            "KServe InferenceService holds at most two (the last ready one and a canary)",
            details={"deployment": deployment.name},
        )
    canaries = [s for s in live if s.revision.role == "canary"]
    canary = canaries[0] if len(canaries) == 1 else max(live, key=lambda s: s.revision.number)
    primary = next(s for s in live if s is not canary)
    return canary, primary


def inference_services(
    deployment: Deployment, served: list[Served], options: RenderOptions
) -> list[Manifest]:
    """One InferenceService for the traffic (a canary as ``canaryTrafficPercent``), and one
    more for the shadow."""
    live = [s for s in served if s.live]
    current, primary = _canary_pair(live, deployment)
    objects = [_inference_service(deployment, current, primary, options, deployment.name)]
    objects += [
        _inference_service(deployment, s, None, options, f"{deployment.name}-shadow")
        for s in served
        if not s.live
    ]
    return objects


def _inference_service(
    deployment: Deployment,
    served: Served,
    primary: Served | None,
    options: RenderOptions,
    name: str,
) -> Manifest:
    spec = deployment.spec
    notes: dict[str, str] = {}
    # Scale-to-zero and canaryTrafficPercent exist only in KServe's Knative mode.
    if spec.min_replicas == 0 or primary is not None:
        notes["serving.kserve.io/deploymentMode"] = "Serverless"
    notes.update(_revision_annotations(served))
    if primary is not None:
        notes["loopml.io/primary-revision"] = str(primary.revision.number)
    pod_notes = _pod_annotations(deployment, served)
    if spec.scale_to_zero_after_s is not None:
        pod_notes["autoscaling.knative.dev/scale-to-zero-pod-retention-period"] = (
            f"{spec.scale_to_zero_after_s}s"
        )
    predictor: Manifest = {
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "scaleMetric": "concurrency",
        "scaleTarget": options.concurrency_target,
    }
    if primary is not None:
        predictor["canaryTrafficPercent"] = served.percent
    predictor["labels"] = _revision_labels(deployment, served)
    predictor["annotations"] = pod_notes
    predictor.update(pod_spec(deployment, served, options, knative=True))
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(
            dns_label(name, ISVC_NAME_LIMIT), options, deployment_labels(deployment), notes
        ),
        "spec": {"predictor": predictor},
    }
