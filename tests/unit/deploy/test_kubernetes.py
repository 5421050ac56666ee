"""The Kubernetes target: rendered manifests checked against the Kubernetes schemas
(kubernetes-validate, offline, strict), the KServe InferenceService checked by structure
(it is a CRD the bundled schemas do not hold), the package fetch an initContainer runs
against a real in-process platform, and the target's apply/prune/delete logic against an
in-memory cluster."""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.deployments import Deployment, DeploymentSpec, DeploymentStatus, Revision
from loopml.core.errors import (
    ArtifactIntegrityError,
    ConfigurationError,
    ConflictError,
    ValidationError,
)
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.deploy.targets._k8s_names import dns_label, label_value
from loopml.deploy.targets.base import RevisionPackage
from loopml.deploy.targets.kubernetes import KubernetesTarget, Manifest, render, to_yaml
from loopml.packaging import MANIFEST_FILE, load_model
from loopml.platform import create_api_app
from loopml.sdk import fetch
from loopml.settings import Settings
from tests.unit.conftest import Served

IMAGE = "registry.example.com/loopml:0.1.0"
URL = "http://loopml.loopml.svc:8765"
# The oldest Kubernetes minor still commonly run, and the newest the package bundles.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
HASHES = {1: "a" * 64, 2: "b" * 64, 3: "c" * 64}
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _revision(number: int, role: str = "primary", model: str = "churn") -> Revision:
    return Revision(
        number=number,
        model=model,
        version=number + 2,
        ref=f"{model}/{number + 2}",
        role=role,  # type: ignore[arg-type]
        created_at=NOW,
    )


def make_deployment(
    *,
    name: str = "churn-prod",
    project: str = "default",
    traffic: dict[int, int] | None = None,
    shadow_revision: int | None = None,
    revisions: list[Revision] | None = None,
    **spec: Any,
) -> Deployment:
    return Deployment(
        id="dep-1",
        project=project,
        name=name,
        spec=DeploymentSpec(model="churn@champion", target="kubernetes", **spec),
        status=DeploymentStatus.READY,
        traffic=traffic or {1: 100},
        shadow_revision=shadow_revision,
        revisions=revisions or [_revision(1)],
        created_at=NOW,
        updated_at=NOW,
    )


def packages_of(deployment: Deployment) -> list[RevisionPackage]:
    return [
        RevisionPackage(r.number, r.model, r.version, HASHES.get(r.number, "d" * 64))
        for r in deployment.revisions
    ]


def canary_deployment(**spec: Any) -> Deployment:
    return make_deployment(
        traffic={1: 90, 2: 10},
        revisions=[_revision(1), _revision(2, "canary")],
        canary={"model": "churn/4", "percent": 10},
        **spec,
    )


def shadow_deployment() -> Deployment:
    return make_deployment(
        shadow_revision=2, revisions=[_revision(1), _revision(2, "shadow")], shadow="churn/4"
    )


def long_deployment() -> Deployment:
    name = "a" + "-b" * 19 + "c"  # 40 characters, the longest valid name
    model = "m" * 62 + "_"  # a valid model name, but not a valid label value
    return make_deployment(
        name=name,
        project="team_x",
        traffic={123456789: 100},
        shadow_revision=123456790,
        revisions=[_revision(123456789, model=model), _revision(123456790, "shadow", model)],
    )


SCENARIOS = {
    "plain": make_deployment,
    "replicas": lambda: make_deployment(min_replicas=2, max_replicas=8),
    "canary": canary_deployment,
    "shadow": shadow_deployment,
    "scale-to-zero": lambda: make_deployment(
        min_replicas=0, max_replicas=3, scale_to_zero_after_s=300
    ),
    "long-names": long_deployment,
    "resources": lambda: make_deployment(resources={"cpu": "2", "memory": "4Gi"}),
}


def rendered(deployment: Deployment, *, pinned: bool = True, **kwargs: Any) -> list[Manifest]:
    packages = packages_of(deployment) if pinned else []
    return render(deployment, image=IMAGE, platform_url=URL, packages=packages, **kwargs)


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a nested manifest."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def pod_specs(manifests: list[Manifest]) -> list[dict[str, Any]]:
    specs = [m["spec"]["template"]["spec"] for m in by_kind(manifests, "Deployment")]
    specs += [m["spec"]["predictor"] for m in by_kind(manifests, "InferenceService")]
    return specs


# ---------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_is_valid_against_the_kubernetes_schema(
    scenario: str, pinned: bool, version: str
) -> None:
    manifests = rendered(SCENARIOS[scenario](), pinned=pinned)

    assert manifests
    for manifest in manifests:
        assert kubernetes_validate.validate(manifest, version, strict=True)


def test_the_schema_check_catches_a_broken_manifest() -> None:
    manifest = rendered(make_deployment())[1]
    manifest["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_kserve_pod_spec_is_a_valid_pod_spec(scenario: str) -> None:
    """The InferenceService is a CRD; its predictor minus KServe's own fields is a PodSpec,
    which the Kubernetes schema can check."""
    deployment = SCENARIOS[scenario]()
    if scenario == "canary":
        deployment = deployment.model_copy(update={"traffic": {1: 90, 2: 10}})
    for service in rendered(deployment, kserve=True):
        predictor = dict(service["spec"]["predictor"])
        for field in (
            "minReplicas",
            "maxReplicas",
            "scaleMetric",
            "scaleTarget",
            "canaryTrafficPercent",
            "labels",
            "annotations",
        ):
            predictor.pop(field, None)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": predictor}
        assert kubernetes_validate.validate(pod, K8S_VERSIONS[-1], strict=True)


# ---------------------------------------------------------------- plain Kubernetes


def test_a_plain_deployment_is_a_service_and_a_deployment_service_hpa_per_revision() -> None:
    manifests = rendered(make_deployment())

    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("Service", "churn-prod"),
        ("Deployment", "churn-prod-r1"),
        ("Service", "churn-prod-r1"),
        ("HorizontalPodAutoscaler", "churn-prod-r1"),
    ]
    assert {m["metadata"]["namespace"] for m in manifests} == {"default"}
    workload = manifests[1]
    labels = workload["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "loopml-model"
    assert labels["loopml.io/deployment"] == "churn-prod"
    assert labels["loopml.io/revision"] == "1"
    assert labels["loopml.io/model"] == "churn"
    assert labels["loopml.io/model-version"] == "3"
    assert "replicas" not in workload["spec"]  # the autoscaler owns it
    pod = workload["spec"]["template"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
        "loopml.io/project": "default",  # the exact names, for the resource readings
        "loopml.io/model": "churn",
    }


def test_the_pods_fetch_then_serve_the_pinned_package() -> None:
    deployment = make_deployment()
    spec = rendered(deployment)[1]["spec"]["template"]["spec"]

    (init,) = spec["initContainers"]
    assert init["command"] == ["python", "-m", "loopml.sdk.fetch"]
    assert init["args"] == [
        "--url",
        URL,
        "--project",
        "default",
        "--model",
        "churn",
        "--version",
        "3",
        "--dest",
        "/var/lib/loopml/model/package",
        "--manifest-sha256",
        HASHES[1],
    ]
    (server,) = spec["containers"]
    assert server["command"] == ["python", "-m", "loopml.serve"]
    args = server["args"]
    assert args[args.index("--manifest-sha256") + 1] == HASHES[1]
    assert args[args.index("--package") + 1] == "/var/lib/loopml/model/package"
    assert args[args.index("--name") + 1] == "churn"
    assert args[args.index("--version") + 1] == "3"
    assert args[args.index("--deployment") + 1] == "churn-prod"
    assert args[args.index("--port") + 1] == "8080"
    assert "--allow-remote" in args
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["model"]["readOnly"] is True
    assert {v["name"]: v for v in spec["volumes"]}["model"] == {"name": "model", "emptyDir": {}}


def test_the_worker_accepts_the_rendered_arguments() -> None:
    from loopml.serve.server.process import build_parser

    server = rendered(make_deployment())[1]["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(server["args"])

    assert (args.name, args.version, args.deployment, args.port) == ("churn", 3, "churn-prod", 8080)
    assert args.allow_remote
    assert args.manifest_sha256 == HASHES[1]


def test_the_fetch_accepts_the_rendered_arguments() -> None:
    for pinned in (True, False):
        spec = rendered(make_deployment(), pinned=pinned)[1]["spec"]["template"]["spec"]
        args = fetch.build_parser().parse_args(spec["initContainers"][0]["args"])
        assert (args.url, args.model, args.version) == (URL, "churn", 3)
        assert (args.manifest_sha256 is not None) is pinned
        assert (args.hash_file is not None) is not pinned


def test_a_token_secret_reaches_the_fetch_and_only_the_fetch() -> None:
    for kserve in (False, True):
        plain = rendered(make_deployment(), kserve=kserve)
        with_token = rendered(make_deployment(), kserve=kserve, token_secret="loopml-pods")
        pod = pod_specs(with_token)[0]
        (init,) = pod["initContainers"]
        assert init["env"] == [
            {
                "name": "LOOPML_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "loopml-pods", "key": "token"}},
            }
        ]
        assert "env" not in pod["containers"][0]
        assert all("env" not in c for p in pod_specs(plain) for c in p["initContainers"])
        # Nothing of the token itself is in the objects, only the Secret's name.
        assert "LOOPML_TOKEN" not in to_yaml(plain)


def test_without_the_package_the_server_takes_the_hash_the_fetch_verified() -> None:
    spec = rendered(make_deployment(), pinned=False)[1]["spec"]["template"]["spec"]

    assert spec["initContainers"][0]["args"][-2:] == [
        "--hash-file",
        "/var/lib/loopml/model/manifest-sha256",
    ]
    server = spec["containers"][0]
    assert server["command"] == ["/bin/sh", "-c"]
    (script,) = server["args"]
    assert script.startswith("sha=$(cat /var/lib/loopml/model/manifest-sha256) && exec python")
    assert '--manifest-sha256 "$sha" --package /var/lib/loopml/model/package' in script


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_probes_resources_and_no_privilege(scenario: str) -> None:
    deployment = SCENARIOS[scenario]()
    for kserve in (False, True):
        manifests = rendered(deployment, kserve=kserve)
        for key, value in walk(manifests):
            assert key not in {"hostNetwork", "hostPID", "hostIPC", "hostPath", "hostPort"}
            assert not (key in {"privileged", "allowPrivilegeEscalation"} and value is not False)
        for spec in pod_specs(manifests):
            for container in spec["initContainers"] + spec["containers"]:
                context = container["securityContext"]
                assert context["runAsNonRoot"] is True
                assert context["runAsUser"] != 0
                assert context["allowPrivilegeEscalation"] is False
                assert context["readOnlyRootFilesystem"] is True
                assert context["capabilities"] == {"drop": ["ALL"]}
                asked = {
                    "cpu": deployment.spec.resources.cpu,
                    "memory": deployment.spec.resources.memory,
                }
                assert container["resources"] == {"requests": asked, "limits": asked}
            (server,) = spec["containers"]
            assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
            assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_labels_and_selectors_match(scenario: str) -> None:
    manifests = rendered(SCENARIOS[scenario]())
    workloads = by_kind(manifests, "Deployment")
    services = {m["metadata"]["name"]: m for m in by_kind(manifests, "Service")}
    scalers = {m["metadata"]["name"]: m for m in by_kind(manifests, "HorizontalPodAutoscaler")}
    stable = manifests[0]
    assert stable["kind"] == "Service"

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return selector.items() <= labels.items()

    for workload in workloads:
        name = workload["metadata"]["name"]
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selects(workload["spec"]["selector"]["matchLabels"], pod_labels)
        assert services[name]["spec"]["selector"] == workload["spec"]["selector"]["matchLabels"]
        assert scalers[name]["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        live = pod_labels["loopml.io/serving"] == "live"
        assert selects(stable["spec"]["selector"], pod_labels) is live
        for _, value in walk(workload["metadata"]["labels"]):
            assert LABEL_VALUE.fullmatch(value)
            assert len(value) <= 63
    # No two revisions' pods are selected by the same revision selector.
    selectors = [tuple(sorted(w["spec"]["selector"]["matchLabels"].items())) for w in workloads]
    assert len(set(selectors)) == len(workloads)


def test_min_and_max_replicas_go_to_the_autoscaler() -> None:
    manifests = rendered(make_deployment(min_replicas=2, max_replicas=8), cpu_utilization=55)
    (scaler,) = by_kind(manifests, "HorizontalPodAutoscaler")

    assert scaler["apiVersion"] == "autoscaling/v2"
    assert (scaler["spec"]["minReplicas"], scaler["spec"]["maxReplicas"]) == (2, 8)
    assert scaler["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 55},
            },
        }
    ]
    assert "annotations" not in scaler["metadata"]


def test_scale_to_zero_keeps_one_replica_without_kserve_and_says_why() -> None:
    deployment = make_deployment(min_replicas=0, max_replicas=3, scale_to_zero_after_s=300)
    (scaler,) = by_kind(rendered(deployment), "HorizontalPodAutoscaler")

    assert (scaler["spec"]["minReplicas"], scaler["spec"]["maxReplicas"]) == (1, 3)
    assert "kserve=True" in scaler["metadata"]["annotations"]["loopml.io/scale-to-zero"]


def test_a_canary_runs_two_revisions_behind_one_service() -> None:
    manifests = rendered(canary_deployment())
    stable = manifests[0]
    workloads = {m["metadata"]["name"]: m for m in by_kind(manifests, "Deployment")}

    assert sorted(workloads) == ["churn-prod-r1", "churn-prod-r2"]
    assert (
        workloads["churn-prod-r1"]["metadata"]["annotations"]["loopml.io/traffic-percent"] == "90"
    )
    canary = workloads["churn-prod-r2"]["metadata"]["annotations"]
    assert (canary["loopml.io/traffic-percent"], canary["loopml.io/role"]) == ("10", "canary")
    assert stable["metadata"]["annotations"]["loopml.io/traffic"] == "1=90,2=10"
    assert "not by percent" in stable["metadata"]["annotations"]["loopml.io/traffic-split"]
    # The pinned hashes follow their revisions.
    for number, name in ((1, "churn-prod-r1"), (2, "churn-prod-r2")):
        args = workloads[name]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--manifest-sha256") + 1] == HASHES[number]


def test_a_shadow_runs_apart_from_the_service() -> None:
    manifests = rendered(shadow_deployment())
    workloads = {m["metadata"]["name"]: m for m in by_kind(manifests, "Deployment")}

    shadow = workloads["churn-prod-r2"]["spec"]["template"]["metadata"]["labels"]
    assert shadow["loopml.io/serving"] == "shadow"
    assert manifests[0]["spec"]["selector"]["loopml.io/serving"] == "live"
    assert manifests[0]["metadata"]["annotations"]["loopml.io/traffic"] == "1=100"
    assert len(by_kind(manifests, "HorizontalPodAutoscaler")) == 2


def test_revisions_without_traffic_are_not_rendered() -> None:
    deployment = make_deployment(traffic={2: 100}, revisions=[_revision(1), _revision(2)])

    names = {m["metadata"]["name"] for m in rendered(deployment)}

    assert names == {"churn-prod", "churn-prod-r2"}


def test_long_names_stay_valid_dns_labels_and_distinct() -> None:
    deployment = long_deployment()
    manifests = rendered(deployment)
    names = [m["metadata"]["name"] for m in manifests]

    for name in names:
        assert DNS1035.fullmatch(name), name
        assert len(name) <= 63, name
    workloads = [m["metadata"]["name"] for m in by_kind(manifests, "Deployment")]
    assert len(set(workloads)) == 2
    assert all(len(name) <= 47 for name in workloads)  # pod names stay valid hostnames
    labels = by_kind(manifests, "Deployment")[0]["metadata"]["labels"]
    assert labels["loopml.io/model"] != "m" * 62 + "_"
    assert LABEL_VALUE.fullmatch(labels["loopml.io/model"])
    assert labels["loopml.io/project"] == "team_x"
    args = by_kind(manifests, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--name") + 1] == "m" * 62 + "_"  # the real name, uncut
    for service in rendered(deployment, kserve=True):
        assert DNS1035.fullmatch(service["metadata"]["name"])
        assert len(service["metadata"]["name"]) <= 45


def test_names_and_label_values_are_kept_when_valid_and_hashed_when_not() -> None:
    assert dns_label("churn-prod-r1") == "churn-prod-r1"
    assert label_value("team_x") == "team_x"
    long_one, other = dns_label("x" * 80), dns_label("x" * 81)
    assert len(long_one) == 63
    assert DNS1035.fullmatch(long_one)
    assert long_one != other
    assert dns_label("x" * 80) == long_one
    assert DNS1035.fullmatch(dns_label("9lives", 20))
    assert DNS1035.fullmatch(dns_label("UPPER_case", 20))
    assert LABEL_VALUE.fullmatch(label_value("_-_"))
    assert LABEL_VALUE.fullmatch(label_value("a" * 70))
    assert len(label_value("a" * 70)) <= 63


# ---------------------------------------------------------------- KServe


def test_kserve_scale_to_zero() -> None:
    deployment = make_deployment(min_replicas=0, max_replicas=5, scale_to_zero_after_s=600)

    (service,) = rendered(deployment, kserve=True, concurrency_target=8)

    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService"
    assert service["metadata"]["name"] == "churn-prod"
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    predictor = service["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 5)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 8)
    assert "canaryTrafficPercent" not in predictor
    assert (
        predictor["annotations"]["autoscaling.knative.dev/scale-to-zero-pod-retention-period"]
        == "600s"
    )
    assert predictor["labels"]["loopml.io/revision"] == "1"
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == IMAGE
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert "privileged" not in container["securityContext"]
    assert predictor["initContainers"][0]["command"] == ["python", "-m", "loopml.sdk.fetch"]
    assert [v["name"] for v in predictor["volumes"]] == ["model", "tmp"]
    # Fields Knative refuses by default stay out of the KServe variant.
    for field in (
        "securityContext",
        "automountServiceAccountToken",
        "terminationGracePeriodSeconds",
    ):
        assert field not in predictor


def test_kserve_without_scale_to_zero_leaves_the_deployment_mode_to_the_cluster() -> None:
    (service,) = rendered(make_deployment(min_replicas=2, max_replicas=4), kserve=True)

    assert "serving.kserve.io/deploymentMode" not in service["metadata"]["annotations"]
    assert service["spec"]["predictor"]["minReplicas"] == 2


def test_kserve_canary_is_the_canary_revision_with_its_percent() -> None:
    (service,) = rendered(canary_deployment(), kserve=True)

    predictor = service["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["labels"]["loopml.io/revision"] == "2"
    args = predictor["containers"][0]["args"]
    assert args[args.index("--manifest-sha256") + 1] == HASHES[2]
    assert service["metadata"]["annotations"]["loopml.io/primary-revision"] == "1"
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"


def test_kserve_shadow_is_an_inference_service_of_its_own() -> None:
    main, shadow = rendered(shadow_deployment(), kserve=True)

    assert main["metadata"]["name"] == "churn-prod"
    assert shadow["metadata"]["name"] == "churn-prod-shadow"
    assert shadow["spec"]["predictor"]["labels"]["loopml.io/serving"] == "shadow"


def test_kserve_refuses_a_three_way_split() -> None:
    deployment = make_deployment(
        traffic={1: 50, 2: 25, 3: 25}, revisions=[_revision(1), _revision(2), _revision(3)]
    )

    with pytest.raises(ValidationError, match="at most two"):
        rendered(deployment, kserve=True)
    assert len(by_kind(rendered(deployment), "Deployment")) == 3


# ---------------------------------------------------------------- output and errors


@pytest.mark.parametrize("kserve", [False, True])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_output_is_deterministic_and_round_trips_as_yaml(scenario: str, kserve: bool) -> None:
    first = rendered(SCENARIOS[scenario](), kserve=kserve)
    again = render(
        SCENARIOS[scenario](),
        image=IMAGE,
        platform_url=URL + "/",
        packages=list(reversed(packages_of(SCENARIOS[scenario]()))),
        kserve=kserve,
    )

    text = to_yaml(first)
    assert first == again
    assert text == to_yaml(again)
    assert list(yaml.safe_load_all(text)) == first
    assert text.startswith("---\napiVersion: ")
    assert "&id" not in text
    assert "*id" not in text


def test_render_refuses_what_it_cannot_run() -> None:
    with pytest.raises(ValidationError, match="no traffic"):
        rendered(make_deployment(traffic={1: 0}))
    with pytest.raises(ValidationError, match=r"revisions \[7\]"):
        rendered(make_deployment(traffic={7: 100}))
    wrong = RevisionPackage(1, "churn", 99, "a" * 64)
    with pytest.raises(ValidationError, match="churn/99"):
        render(make_deployment(), image=IMAGE, platform_url=URL, packages=[wrong])
    with pytest.raises(ValidationError, match="image"):
        render(make_deployment(), image="has space", platform_url=URL)
    with pytest.raises(ValidationError, match="platform URL"):
        render(make_deployment(), image=IMAGE, platform_url="loopml:8765")
    with pytest.raises(ValidationError, match="namespace"):
        render(make_deployment(), image=IMAGE, platform_url=URL, namespace="Team_A")
    with pytest.raises(ValidationError, match="cpu_utilization"):
        render(make_deployment(), image=IMAGE, platform_url=URL, cpu_utilization=0)


# ---------------------------------------------------------------- the target


class FakeCluster:
    """An in-memory stand-in for the kubernetes client (never loopml's own code)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Manifest] = {}
        self.applied: list[str] = []

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest | None:
        return self.objects.get((kind, namespace, name))

    def apply(self, manifest: Manifest, *, field_manager: str) -> None:
        assert field_manager == "loopml"
        meta = manifest["metadata"]
        self.objects[(manifest["kind"], meta["namespace"], meta["name"])] = manifest
        self.applied.append(f"{manifest['kind']}/{meta['name']}")

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Manifest]:
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        return [
            item
            for (k, ns, _), item in sorted(self.objects.items())
            if k == kind
            and ns == namespace
            and wanted.items() <= (item["metadata"].get("labels") or {}).items()
        ]

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self.objects.pop((kind, namespace, name), None)

    def names(self) -> set[str]:
        return {f"{kind}/{name}" for kind, _, name in self.objects}


def _target(cluster: FakeCluster, **kwargs: Any) -> KubernetesTarget:
    return KubernetesTarget(image=IMAGE, platform_url=URL, api=cluster, **kwargs)


def test_apply_creates_then_prunes_revisions_that_lost_their_traffic() -> None:
    cluster = FakeCluster()
    unrelated = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "db", "namespace": "default"},
    }
    cluster.objects[("Service", "default", "db")] = unrelated
    target = _target(cluster)
    deployment = canary_deployment()

    target.apply(deployment, packages_of(deployment))
    assert cluster.names() == {
        "Service/db",
        "Service/churn-prod",
        *(
            f"{k}/churn-prod-r{n}"
            for k in ("Deployment", "Service", "HorizontalPodAutoscaler")
            for n in (1, 2)
        ),
    }

    promoted = deployment.model_copy(update={"traffic": {2: 100}})
    target.apply(promoted, packages_of(promoted))
    assert cluster.names() == {
        "Service/db",
        "Service/churn-prod",
        "Deployment/churn-prod-r2",
        "Service/churn-prod-r2",
        "HorizontalPodAutoscaler/churn-prod-r2",
    }
    annotations = cluster.objects[("Service", "default", "churn-prod")]["metadata"]["annotations"]
    assert annotations["loopml.io/traffic"] == "2=100"

    target.delete(promoted)
    assert cluster.names() == {"Service/db"}
    target.delete(promoted)  # idempotent


def test_apply_needs_every_served_revisions_package() -> None:
    cluster = FakeCluster()
    deployment = canary_deployment()

    with pytest.raises(ValidationError, match=r"revisions \[2\]"):
        _target(cluster).apply(deployment, packages_of(deployment)[:1])
    assert cluster.objects == {}


def test_apply_refuses_to_take_over_another_projects_object() -> None:
    cluster = FakeCluster()
    theirs = make_deployment(project="other")
    _target(cluster).apply(theirs, packages_of(theirs))
    before = dict(cluster.objects)
    ours = make_deployment(project="default")

    with pytest.raises(ConflictError, match="is not deployment default/churn-prod's"):
        _target(cluster).apply(ours, packages_of(ours))
    assert cluster.objects == before  # nothing applied, nothing pruned


def test_ready_replicas_reads_the_deployments_status() -> None:
    cluster = FakeCluster()
    deployment = canary_deployment()
    target = _target(cluster)
    target.apply(deployment, packages_of(deployment))
    assert target.ready_replicas(deployment) == 0

    cluster.objects[("Deployment", "default", "churn-prod-r1")]["status"] = {"readyReplicas": 3}
    cluster.objects[("Deployment", "default", "churn-prod-r2")]["status"] = {"readyReplicas": 1}
    assert target.ready_replicas(deployment) == 4
    assert target.ready_replicas(make_deployment(name="other")) == 0


def test_ready_replicas_with_kserve_counts_ready_predictor_pods() -> None:
    cluster = FakeCluster()
    deployment = make_deployment()
    target = _target(cluster, kserve=True)
    target.apply(deployment, packages_of(deployment))
    assert cluster.names() == {"InferenceService/churn-prod"}
    labels = cluster.objects[("InferenceService", "default", "churn-prod")]["spec"]["predictor"][
        "labels"
    ]

    for index, ready in enumerate(["True", "False", "True"]):
        cluster.objects[("Pod", "default", f"pod-{index}")] = {
            "metadata": {"name": f"pod-{index}", "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }
    assert target.ready_replicas(deployment) == 2


def test_without_a_kubeconfig_the_target_says_how_to_configure_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = make_deployment()
    target = KubernetesTarget(image=IMAGE, platform_url=URL, kubeconfig=tmp_path / "missing")
    assert target.render(deployment, packages_of(deployment))  # rendering needs no cluster

    with pytest.raises(ConfigurationError, match="LOOPML_KUBERNETES_KUBECONFIG") as info:
        target.apply(deployment, packages_of(deployment))
    assert "is not a file" in info.value.message

    from kubernetes.config import kube_config

    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", "~/.kube/config")
    default = KubernetesTarget(image=IMAGE, platform_url=URL)
    for call in (default.ready_replicas, default.delete):
        with pytest.raises(ConfigurationError, match="no usable Kubernetes configuration"):
            call(deployment)

    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    with pytest.raises(ConfigurationError, match="LOOPML_KUBERNETES_CONTEXT"):
        KubernetesTarget(image=IMAGE, platform_url=URL, kubeconfig=broken).delete(deployment)

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    in_cluster = KubernetesTarget(image=IMAGE, platform_url=URL, in_cluster=True)
    with pytest.raises(ConfigurationError, match="works only inside a pod"):
        in_cluster.delete(deployment)


def test_without_the_kubernetes_client_the_target_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in ("kubernetes", "kubernetes.config", "kubernetes.client", "kubernetes.dynamic"):
        monkeypatch.setitem(sys.modules, module, None)
    target = KubernetesTarget(image=IMAGE, platform_url=URL)

    with pytest.raises(ConfigurationError, match=r"pip install 'loopml\[kubernetes\]'"):
        target.delete(make_deployment())


# ---------------------------------------------------------------- the package fetch


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[TestClient]:
    """The real platform app in-process, on a SQLite file and a local artifact folder."""
    settings = Settings(
        home=tmp_path / "home",
        database={"url": f"sqlite:///{tmp_path / 'loopml.db'}"},
        artifacts={"root": str(tmp_path / "artifacts")},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        yield http


def register(sdk: Client, served: Served) -> ModelVersion:
    """Upload a real package as a run's model and register it, through the SDK."""
    run = sdk.runs.create("exp")
    for file in sorted(served.package.path.iterdir()):
        sdk.runs.upload_artifact(run.id, f"model/{file.name}", file)
    manifest = served.package.manifest
    sdk.runs.record_model(
        run.id,
        path="model",
        flavor=manifest.flavor,
        format=manifest.primary,
        manifest_sha256=served.package.manifest_sha256,
        signature=manifest.signature.model_dump(mode="json"),
        summary={},
    )
    sdk.runs.end(run.id, "FINISHED")
    version = sdk.models.register_version("churn", run_id=run.id)
    assert version.status == VersionStatus.READY, version.status_message
    return version


def stored(tmp_path: Path, name: str) -> Path:
    (path,) = (tmp_path / "artifacts").rglob(name)
    return path


def run_fetch(platform: TestClient, dest: Path, *extra: str) -> int:
    argv = ["--url", "http://ignored", "--model", "churn", "--version", "1", "--dest", str(dest)]
    return fetch.main([*argv, *extra], http=platform)


def test_fetch_downloads_and_verifies_the_package(
    platform: TestClient, cancer: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = register(Client(http=platform), cancer)
    dest = tmp_path / "pod" / "package"
    hash_file = tmp_path / "pod" / "manifest-sha256"

    code = run_fetch(
        platform,
        dest,
        "--manifest-sha256",
        version.manifest_sha256.upper(),
        "--hash-file",
        str(hash_file),
    )

    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        p.name for p in cancer.package.path.iterdir()
    )
    loaded = load_model(dest, manifest_sha256=version.manifest_sha256)
    assert loaded.manifest == cancer.package.manifest
    assert hash_file.read_text() == f"{version.manifest_sha256}\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["manifest-sha256", "package"]
    assert "verified" in capsys.readouterr().err
    # A restarted pod finds the package there: verified in place, not fetched again.
    assert run_fetch(platform, dest) == 0


def test_fetch_refuses_a_tampered_file(
    platform: TestClient, cancer: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(Client(http=platform), cancer)
    onnx = stored(tmp_path, "model.onnx")
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    dest = tmp_path / "pod" / "package"

    assert run_fetch(platform, dest) == 2
    err = capsys.readouterr().err
    assert "REFUSED default:churn/1" in err
    assert "hash mismatch for model.onnx" in err
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial download left behind
    with pytest.raises(ArtifactIntegrityError, match=r"model\.onnx"):
        fetch.fetch_version(
            Client(http=platform), project="default", model="churn", version=1, dest=dest
        )


def test_fetch_refuses_a_tampered_manifest(
    platform: TestClient, cancer: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(Client(http=platform), cancer)
    manifest = stored(tmp_path, MANIFEST_FILE)
    manifest.write_bytes(manifest.read_bytes().replace(b'"sklearn"', b'"lightgbm"'))

    assert run_fetch(platform, tmp_path / "pod" / "package") == 2
    assert f"hash mismatch for {MANIFEST_FILE}" in capsys.readouterr().err


def test_fetch_refuses_a_hash_other_than_the_pinned_one(
    platform: TestClient, cancer: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(Client(http=platform), cancer)
    dest = tmp_path / "pod" / "package"

    assert run_fetch(platform, dest, "--manifest-sha256", "0" * 64) == 2
    assert "the deployment pinned manifest sha256 " + "0" * 64 in capsys.readouterr().err
    assert not dest.exists()


def test_fetch_refuses_a_package_changed_on_the_pods_disk(
    platform: TestClient, cancer: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(Client(http=platform), cancer)
    dest = tmp_path / "pod" / "package"
    assert run_fetch(platform, dest) == 0
    (dest / "model.pkl").write_bytes(b"not a package file")

    assert run_fetch(platform, dest) == 2
    assert "model.pkl" in capsys.readouterr().err


def test_fetch_of_a_missing_version_fails_with_status_1(
    platform: TestClient, cancer: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(Client(http=platform), cancer)
    argv = [
        "--url",
        "http://x",
        "--model",
        "churn",
        "--version",
        "9",
        "--dest",
        str(tmp_path / "d"),
    ]

    assert fetch.main(argv, http=platform) == 1
    assert "cannot fetch default:churn/9" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        fetch.main([*argv, "--manifest-sha256", "xyz"], http=platform)
    assert info.value.code == 2


# ---------------------------------------------------------------- deploy/ examples

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
EXAMPLE_HEADER = (
    "# What `render` gives for the deployment churn-prod in the namespace models: churn/3\n"
    "# (revision 1) takes 90% of the traffic and the canary churn/4 (revision 2) 10%.\n"
    "# Generated: tests/unit/deploy/test_kubernetes.py::write_example. See docs/kubernetes.md.\n"
)


def example_text() -> str:
    deployment = canary_deployment(min_replicas=2, max_replicas=6)
    packages = [
        RevisionPackage(r.number, r.model, r.version, hashlib.sha256(r.ref.encode()).hexdigest())
        for r in deployment.revisions
    ]
    manifests = render(
        deployment, image=IMAGE, platform_url=URL, namespace="models", packages=packages
    )
    return EXAMPLE_HEADER + to_yaml(manifests)


def write_example() -> None:
    """Regenerate deploy/kubernetes/example-canary.yaml after a change to the manifests."""
    (DEPLOY / "example-canary.yaml").write_text(example_text())


def test_the_example_in_deploy_is_what_render_gives() -> None:
    assert (DEPLOY / "example-canary.yaml").read_text() == example_text(), (
        "regenerate it: .venv/bin/python -c 'from tests.unit.deploy.test_kubernetes import "
        "write_example; write_example()'"
    )


def test_the_rbac_example_is_valid() -> None:
    documents = [d for d in yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()) if d]

    assert [d["kind"] for d in documents] == ["ServiceAccount", "Role", "RoleBinding"]
    for document in documents:
        assert kubernetes_validate.validate(document, K8S_VERSIONS[-1], strict=True)
    rules = {
        (g, r)
        for rule in documents[1]["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    for manifest in rendered(shadow_deployment()) + rendered(shadow_deployment(), kserve=True):
        group = manifest["apiVersion"].rpartition("/")[0]
        assert (group, manifest["kind"].lower() + "s") in rules, manifest["kind"]


def test_fetch_sends_the_pods_token_when_authentication_is_on(
    tmp_path: Path, cancer: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.auth import service

    settings = Settings(
        home=tmp_path / "home",
        database={"url": f"sqlite:///{tmp_path / 'loopml.db'}"},
        artifacts={"root": str(tmp_path / "artifacts")},
        auth={"enabled": True},
    )
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        store, key = http.app.state.running.context.store, http.app.state.running.auth_key
        password = "a long pod password 42"
        service.create_user(store, "ada", password, platform_admin=True, actor="test")
        token = service.login(store, key, "ada", password, lifetime=timedelta(days=1)).token
        assert token is not None
        register(Client(http=http, token=token), cancer)
        http.headers.pop("Authorization")
        dest = tmp_path / "pod" / "package"

        monkeypatch.delenv("LOOPML_TOKEN", raising=False)
        assert run_fetch(http, dest) == 1
        assert not dest.exists()

        monkeypatch.setenv("LOOPML_TOKEN", token)
        assert run_fetch(http, dest) == 0
        assert (dest / MANIFEST_FILE).is_file()
