"""A deployment's Gateway API HTTPRoute, for the cluster's own data plane to split traffic by
the deployment's exact percentages and copy it to the shadow (plain Kubernetes only).

One ``gateway.networking.k8s.io/v1`` HTTPRoute ``<deployment>``, attached to the Gateway the
target's ``gateway_parent`` names, with one rule:

* **match**: the path prefix the platform's own gateway serves the deployment at,
  ``/deployments/<name>`` in the default project and ``/projects/<project>/deployments/<name>``
  in any other, so a client changes only the host it calls;
* **filters**, in this order: ``URLRewrite`` replacing that prefix with ``/`` (the model
  server answers ``/predict`` and ``/v2/...``), then, with a shadow, ``RequestMirror`` to the
  shadow revision's Service. Implementations apply filters in the order given "wherever
  possible" (the HTTPRoute spec), so the copy carries the rewritten path; the gateway
  discards the copy's answers;
* **backendRefs**: each revision with traffic, its own Service on port 80, its ``weight`` its
  percent (weights are proportions of their sum, and the percents sum to 100).

The shadow is never a weighted backend. The Service ``<deployment>`` stays as it is, for
clients inside the cluster that do not go through the Gateway.
"""

from __future__ import annotations

import re
from typing import Any

from loopml.core.deployments import Deployment
from loopml.core.errors import ValidationError
from loopml.core.names import DEFAULT_PROJECT
from loopml.deploy.targets._k8s_manifests import (
    SERVICE_PORT,
    deployment_labels,
    revision_name,
    traffic_note,
)
from loopml.deploy.targets._k8s_names import GatewayParent, dns_label
from loopml.deploy.targets._k8s_pod import Manifest, RenderOptions, Served

API_VERSION = "gateway.networking.k8s.io/v1"
# What an HTTPRoute path match may hold (the Gateway API CRD's own pattern, and its limit).
_PATH = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$")
_PATH_LIMIT = 1024


def route_path(deployment: Deployment) -> str:
    """The path prefix the deployment answers under, as on the platform's gateway."""
    if deployment.project == DEFAULT_PROJECT:
        path = f"/deployments/{deployment.name}"
    else:
        path = f"/projects/{deployment.project}/deployments/{deployment.name}"
    if len(path) > _PATH_LIMIT or not _PATH.fullmatch(path) or "//" in path:
        raise ValidationError(
            f"deployment {deployment.project}/{deployment.name} cannot be routed at {path!r}: "
            "project and deployment names must be URL path segments",
            details={"deployment": deployment.name},
        )
    return path


def _parent_ref(parent: GatewayParent) -> dict[str, str]:
    ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": parent.name}
    if parent.namespace is not None:
        ref["namespace"] = parent.namespace
    return ref


def _service_ref(deployment: Deployment, served: Served) -> dict[str, Any]:
    return {"name": revision_name(deployment, served.revision), "port": SERVICE_PORT}


def http_route(
    deployment: Deployment, served: list[Served], options: RenderOptions, parent: GatewayParent
) -> Manifest:
    """The deployment's HTTPRoute: its revisions with traffic weighted by percent, the
    shadow mirrored."""
    rewrite = {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}
    filters: list[dict[str, Any]] = [{"type": "URLRewrite", "urlRewrite": rewrite}]
    notes = {"loopml.io/traffic": traffic_note(served)}
    for shadow in (s for s in served if not s.live):
        mirror = {"backendRef": _service_ref(deployment, shadow)}
        filters.append({"type": "RequestMirror", "requestMirror": mirror})
        notes["loopml.io/shadow-revision"] = str(shadow.revision.number)
    backends = [{**_service_ref(deployment, s), "weight": s.percent} for s in served if s.live]
    rule = {
        "matches": [{"path": {"type": "PathPrefix", "value": route_path(deployment)}}],
        "filters": filters,
        "backendRefs": backends,
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": dns_label(deployment.name),
            "namespace": options.namespace,
            "labels": deployment_labels(deployment),
            "annotations": notes,
        },
        "spec": {"parentRefs": [_parent_ref(parent)], "rules": [rule]},
    }
