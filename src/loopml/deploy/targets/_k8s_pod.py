"""The pod of a served revision, as the Kubernetes target renders it: an initContainer that
fetches and verifies the package (``python -m loopml.sdk.fetch``), the model server's container
with its probes, resources and a locked-down security context."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from loopml.core.deployments import Deployment, Revision
from loopml.deploy.targets._k8s_names import GatewayParent

Manifest = dict[str, Any]

PACKAGE_ROOT = "/var/lib/loopml/model"
PACKAGE_DIR = f"{PACKAGE_ROOT}/package"
HASH_FILE = f"{PACKAGE_ROOT}/manifest-sha256"
PORT = 8080
RUN_AS = 10001


@dataclass(frozen=True)
class RenderOptions:
    """What every rendered object shares besides the deployment."""

    image: str
    platform_url: str
    namespace: str
    cpu_utilization: int
    concurrency_target: int
    token_secret: str | None = None
    gateway: GatewayParent | None = None
    """The Gateway a deployment's HTTPRoute attaches to; ``None`` renders no HTTPRoute."""


@dataclass(frozen=True)
class Served:
    """A revision that runs: ``percent`` of the traffic, or the shadow (``live`` false)."""

    revision: Revision
    live: bool
    percent: int
    manifest_sha256: str | None


def security_context(*, knative: bool) -> dict[str, Any]:
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "allowPrivilegeEscalation": False,
    }
    if not knative:
        # Knative refuses the field even set to false (false is the default anyway).
        context["privileged"] = False
    context["readOnlyRootFilesystem"] = True
    context["capabilities"] = {"drop": ["ALL"]}
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


def resources(deployment: Deployment) -> dict[str, Any]:
    asked = {
        "cpu": deployment.spec.resources.cpu,
        "memory": deployment.spec.resources.memory,
    }
    return {"requests": dict(asked), "limits": dict(asked)}


def fetch_container(
    deployment: Deployment, served: Served, options: RenderOptions, *, knative: bool
) -> Manifest:
    revision = served.revision
    args = [
        "--url",
        options.platform_url,
        "--project",
        deployment.project,
        "--model",
        revision.model,
        "--version",
        str(revision.version),
        "--dest",
        PACKAGE_DIR,
    ]
    if served.manifest_sha256:
        args += ["--manifest-sha256", served.manifest_sha256]
    else:
        args += ["--hash-file", HASH_FILE]
    container: Manifest = {
        "name": "fetch-model",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "loopml.sdk.fetch"],
        "args": args,
        "resources": resources(deployment),
        "securityContext": security_context(knative=knative),
        "volumeMounts": [
            {"name": "model", "mountPath": PACKAGE_ROOT},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir, the pod's own)
        ],
    }
    if options.token_secret:
        # With authentication on, the download needs a token: read from a Secret, never
        # written into the pod spec itself.
        container["env"] = [
            {
                "name": "LOOPML_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": options.token_secret, "key": "token"}},
            }
        ]
    return container


def server_command(deployment: Deployment, served: Served) -> tuple[list[str], list[str]]:
    revision = served.revision
    rest = [
        "--package",
        PACKAGE_DIR,
        "--name",
        revision.model,
        "--version",
        str(revision.version),
        "--deployment",
        deployment.name,
        # The pod network fronts the server: it must listen on the pod's address.
        "--host",
        "0.0.0.0",  # noqa: S104
        "--allow-remote",
        "--port",
        str(PORT),
    ]
    if served.manifest_sha256:
        pinned = ["--manifest-sha256", served.manifest_sha256, *rest]
        return ["python", "-m", "loopml.serve"], pinned
    # Unpinned (rendered without the revision's package): the hash the fetch verified
    # against the registry is handed on through the pod's own volume.
    script = (
        f"sha=$(cat {HASH_FILE}) && exec python -m loopml.serve --manifest-sha256 "
        f'"$sha" {shlex.join(rest)}'
    )
    return ["/bin/sh", "-c"], [script]


def probe(path: str, *, knative: bool, period: int, failures: int) -> Manifest:
    # Knative routes probes through its queue-proxy and accepts no port but the serving
    # one, by number (its port carries no name).
    action: dict[str, Any] = {"path": path, "port": PORT if knative else "http"}
    return {
        "httpGet": action,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def server_container(
    deployment: Deployment, served: Served, options: RenderOptions, *, knative: bool
) -> Manifest:
    command, args = server_command(deployment, served)
    port: dict[str, Any] = {"containerPort": PORT, "protocol": "TCP"}
    container: Manifest = {
        "name": "kserve-container" if knative else "model-server",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "args": args,
        "ports": [port if knative else {"name": "http", **port}],
        "resources": resources(deployment),
        "readinessProbe": probe("/v2/health/ready", knative=knative, period=5, failures=3),
        "livenessProbe": probe("/v2/health/live", knative=knative, period=10, failures=3),
    }
    if not knative:
        # Loading a large model can take a while; liveness starts counting only after this.
        container["startupProbe"] = probe("/v2/health/live", knative=False, period=2, failures=90)
    container["securityContext"] = security_context(knative=knative)
    container["volumeMounts"] = [
        {"name": "model", "mountPath": PACKAGE_ROOT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir, the pod's own)
    ]
    return container


def pod_spec(
    deployment: Deployment, served: Served, options: RenderOptions, *, knative: bool
) -> Manifest:
    spec: Manifest = {}
    if not knative:
        spec["automountServiceAccountToken"] = False
        spec["enableServiceLinks"] = False
        spec["securityContext"] = {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        # The server drains requests in flight for up to 30 s on SIGTERM (its default).
        spec["terminationGracePeriodSeconds"] = 45
    spec["initContainers"] = [fetch_container(deployment, served, options, knative=knative)]
    spec["containers"] = [server_container(deployment, served, options, knative=knative)]
    spec["volumes"] = [
        {"name": "model", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    return spec
