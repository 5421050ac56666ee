"""The Kubernetes target's Gateway API HTTPRoute: its weights are the deployment's traffic,
the shadow is a RequestMirror, canary moves through the real control plane change it, and
delete and prune remove it. The route is checked by structure (``httproute_check``: no
package ships the CRD's schema), and that check is shown to catch broken routes."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml

from loopml.core.deployments import Deployment
from loopml.core.errors import ConfigurationError, ConflictError, ValidationError
from loopml.deploy import DeploymentControl
from loopml.deploy.targets import open_targets
from loopml.deploy.targets._k8s_client import _DynamicApi
from loopml.deploy.targets.kubernetes import KubernetesTarget, Manifest, render, to_yaml
from loopml.settings import Settings
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore
from tests.unit.deploy.deploy_support import package_files, register_files
from tests.unit.deploy.httproute_check import GROUP, reference_problems, route_problems
from tests.unit.deploy.test_kubernetes import (
    IMAGE,
    K8S_VERSIONS,
    URL,
    FakeCluster,
    _revision,
    canary_deployment,
    long_deployment,
    make_deployment,
    packages_of,
    shadow_deployment,
)

PARENT = "gateway-system/public"
ROOT = Path(__file__).resolve().parents[3]

# ------------------------------------------------------------ scenarios


def canary_and_shadow(project: str = "default") -> Deployment:
    return make_deployment(
        project=project,
        traffic={1: 90, 2: 10},
        shadow_revision=3,
        revisions=[_revision(1), _revision(2, "canary"), _revision(3, "shadow")],
    )


SCENARIOS: dict[str, Callable[[], Deployment]] = {
    "plain": make_deployment,
    "canary": canary_deployment,
    "shadow": shadow_deployment,
    "canary-and-shadow": canary_and_shadow,
    "three-way": lambda: make_deployment(
        traffic={1: 50, 2: 30, 3: 20}, revisions=[_revision(1), _revision(2), _revision(3)]
    ),
    "long-names": long_deployment,
    "other-project": lambda: canary_and_shadow("team_x"),
}


def routed(deployment: Deployment, parent: str | None = PARENT, **kwargs: Any) -> list[Manifest]:
    return render(
        deployment,
        image=IMAGE,
        platform_url=URL,
        packages=packages_of(deployment),
        gateway_parent=parent,
        **kwargs,
    )


def route_in(manifests: list[Manifest]) -> Manifest:
    (route,) = [m for m in manifests if m["kind"] == "HTTPRoute"]
    return route


def weights(route: Manifest) -> list[tuple[str, int]]:
    (rule,) = route["spec"]["rules"]
    return [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]]


def mirrors(route: Manifest) -> list[str]:
    (rule,) = route["spec"]["rules"]
    return [
        f["requestMirror"]["backendRef"]["name"]
        for f in rule["filters"]
        if f["type"] == "RequestMirror"
    ]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_route_is_a_valid_httproute_to_the_rendered_services(scenario: str) -> None:
    deployment = SCENARIOS[scenario]()
    manifests = routed(deployment)
    route = route_in(manifests)

    assert route_problems(route) == []
    assert reference_problems(route, manifests, deployment) == []
    assert manifests[-1] is route  # applied after the Services it routes to
    assert route["metadata"]["labels"] == manifests[0]["metadata"]["labels"]  # pruned with them
    assert list(yaml.safe_load_all(to_yaml(manifests))) == manifests
    assert routed(deployment) == manifests  # deterministic
    # Every other object stays valid against the Kubernetes schemas.
    for manifest in manifests[:-1]:
        assert kubernetes_validate.validate(manifest, K8S_VERSIONS[-1], strict=True)


def test_the_weights_are_the_exact_traffic_split() -> None:
    route = route_in(routed(canary_deployment()))

    assert weights(route) == [("churn-prod-r1", 90), ("churn-prod-r2", 10)]
    assert mirrors(route) == []
    three = make_deployment(
        traffic={1: 50, 2: 30, 3: 20}, revisions=[_revision(1), _revision(2), _revision(3)]
    )
    assert weights(route_in(routed(three))) == [
        ("churn-prod-r1", 50),
        ("churn-prod-r2", 30),
        ("churn-prod-r3", 20),
    ]


def test_the_shadow_is_a_request_mirror_and_never_a_weighted_backend() -> None:
    route = route_in(routed(canary_and_shadow()))
    (rule,) = route["spec"]["rules"]

    assert weights(route) == [("churn-prod-r1", 90), ("churn-prod-r2", 10)]
    assert [f["type"] for f in rule["filters"]] == ["URLRewrite", "RequestMirror"]
    assert rule["filters"][1]["requestMirror"] == {
        "backendRef": {"name": "churn-prod-r3", "port": 80}
    }
    assert route["metadata"]["annotations"] == {
        "loopml.io/traffic": "1=90,2=10",
        "loopml.io/shadow-revision": "3",
    }
    # A revision that takes traffic and is also named the shadow is weighted, not copied
    # twice.
    both = make_deployment(
        traffic={1: 90, 2: 10}, shadow_revision=2, revisions=[_revision(1), _revision(2)]
    )
    assert mirrors(route_in(routed(both))) == []


def test_the_route_matches_the_platforms_gateway_path_and_strips_it() -> None:
    (rule,) = route_in(routed(make_deployment()))["spec"]["rules"]
    (other,) = route_in(routed(canary_and_shadow("team_x")))["spec"]["rules"]

    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/deployments/churn-prod"}}]
    assert other["matches"][0]["path"]["value"] == "/projects/team_x/deployments/churn-prod"
    assert rule["filters"][0] == {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
    }


def test_the_parent_is_the_configured_gateway() -> None:
    assert route_in(routed(make_deployment()))["spec"]["parentRefs"] == [
        {"group": GROUP, "kind": "Gateway", "name": "public", "namespace": "gateway-system"}
    ]
    # A Gateway in the route's own namespace is named alone.
    assert route_in(routed(make_deployment(), parent="edge.v2"))["spec"]["parentRefs"] == [
        {"group": GROUP, "kind": "Gateway", "name": "edge.v2"}
    ]


def test_without_a_gateway_parent_there_is_no_route_and_the_service_says_how() -> None:
    manifests = routed(canary_deployment(), parent=None)

    assert "HTTPRoute" not in {m["kind"] for m in manifests}
    split = manifests[0]["metadata"]["annotations"]["loopml.io/traffic-split"]
    assert "kubernetes.gateway_parent" in split
    with_route = routed(canary_deployment())
    assert "HTTPRoute" in with_route[0]["metadata"]["annotations"]["loopml.io/traffic-split"]


@pytest.mark.parametrize(
    "parent", ["", "Public", "a/b/c", "/public", "ns/", "-edge", "UPPER/public", "x" * 254]
)
def test_an_invalid_gateway_parent_is_refused(parent: str) -> None:
    with pytest.raises(ValidationError, match="gateway_parent"):
        routed(make_deployment(), parent=parent)
    with pytest.raises(ValidationError, match="gateway_parent"):
        KubernetesTarget(image=IMAGE, platform_url=URL, gateway_parent=parent)


def test_kserve_routes_itself_so_a_gateway_parent_is_refused_with_it() -> None:
    with pytest.raises(ValidationError, match="KServe routes its InferenceServices itself"):
        routed(make_deployment(), kserve=True)
    with pytest.raises(ValidationError, match="kserve"):
        KubernetesTarget(image=IMAGE, platform_url=URL, kserve=True, gateway_parent=PARENT)


# ------------------------------------------------------------ the check itself can fail


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    """A change to the field at dotted ``path`` (list indexes as numbers; the index after
    the last item appends)."""

    def change(route: Manifest) -> None:
        *parents, last = path.split(".")
        node: Any = route
        for step in parents:
            node = node[int(step)] if step.isdigit() else node[step]
        key: Any = int(last) if last.isdigit() else last
        if value is _DELETE:
            del node[key]
        elif isinstance(node, list) and key == len(node):
            node.append(value)
        else:
            node[key] = value

    return change


def _annotate(route: Manifest) -> None:
    route["metadata"]["annotations"]["loopml.io/shadow-revision"] = 3


_DELETE = object()
RULE = "spec.rules.0"
BROKEN = {
    "a weight that is a string": _set(f"{RULE}.backendRefs.0.weight", "90"),
    "a negative weight": _set(f"{RULE}.backendRefs.0.weight", -1),
    "a backend without a port": _set(f"{RULE}.backendRefs.0.port", _DELETE),
    "a port out of range": _set(f"{RULE}.backendRefs.1.port", 70000),
    "an unknown backend field": _set(f"{RULE}.backendRefs.0.percent", 90),
    "a mirror with a weight": _set(f"{RULE}.filters.1.requestMirror.backendRef.weight", 1),
    "a mirror without its body": _set(f"{RULE}.filters.1.requestMirror", _DELETE),
    "a filter type misspelt": _set(f"{RULE}.filters.1.type", "Mirror"),
    "a relative path": _set(f"{RULE}.matches.0.path.value", "deployments/churn-prod"),
    "a path with //": _set(f"{RULE}.matches.0.path.value", "/deployments//churn-prod"),
    "an exact match with a prefix rewrite": _set(f"{RULE}.matches.0.path.type", "Exact"),
    "a second match with a prefix rewrite": _set(
        f"{RULE}.matches.1", {"path": {"type": "PathPrefix", "value": "/v2"}}
    ),
    "a repeated rewrite": _set(f"{RULE}.filters.2", {"type": "URLRewrite", "urlRewrite": {}}),
    "a rewrite type without its value": _set(f"{RULE}.filters.0.urlRewrite.path.type", "X"),
    "no rules": _set("spec.rules", []),
    "an unknown spec field": _set("spec.backendRefs", []),
    "a parent without a name": _set("spec.parentRefs.0.name", _DELETE),
    "a parent namespace that is no DNS label": _set("spec.parentRefs.0.namespace", "Infra"),
    "the wrong API version": _set("apiVersion", "gateway.networking.k8s.io/v1beta2"),
    "an annotation that is a number": _annotate,
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_structural_check_catches_a_broken_route(case: str) -> None:
    route = copy.deepcopy(route_in(routed(canary_and_shadow())))
    assert route_problems(route) == []
    BROKEN[case](route)

    assert route_problems(route), case


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("a weight off the traffic", _set(f"{RULE}.backendRefs.0.weight", 80)),
        ("a backend that is no rendered Service", _set(f"{RULE}.backendRefs.1.name", "churn")),
        ("the wrong Service port", _set(f"{RULE}.backendRefs.0.port", 8080)),
        ("no mirror", _set(f"{RULE}.filters.1", _DELETE)),
        (
            "the shadow weighted",
            _set(f"{RULE}.backendRefs.2", {"name": "churn-prod-r3", "port": 80, "weight": 0}),
        ),
        ("the stable Service as a backend", _set(f"{RULE}.backendRefs.0.name", "churn-prod")),
    ],
)
def test_the_reference_check_catches_a_wrong_route(
    case: str, change: Callable[[Manifest], None]
) -> None:
    deployment = canary_and_shadow()
    manifests = routed(deployment)
    route = copy.deepcopy(route_in(manifests))
    change(route)

    assert route_problems(route) == [], case  # still a well-formed HTTPRoute
    assert reference_problems(route, manifests, deployment), case


# ------------------------------------------------------------ apply, prune, delete


def _target(cluster: FakeCluster, parent: str | None = PARENT) -> KubernetesTarget:
    return KubernetesTarget(image=IMAGE, platform_url=URL, api=cluster, gateway_parent=parent)


def _route(cluster: FakeCluster) -> Manifest | None:
    return cluster.objects.get(("HTTPRoute", "default", "churn-prod"))


def test_apply_sends_the_route_last_and_delete_removes_it() -> None:
    cluster = FakeCluster()
    target = _target(cluster)
    deployment = canary_and_shadow()

    target.apply(deployment, packages_of(deployment))
    route = _route(cluster)
    assert route is not None
    assert cluster.applied[-1] == "HTTPRoute/churn-prod"
    assert weights(route) == [("churn-prod-r1", 90), ("churn-prod-r2", 10)]
    assert mirrors(route) == ["churn-prod-r3"]

    promoted = deployment.model_copy(update={"traffic": {2: 100}, "shadow_revision": None})
    target.apply(promoted, packages_of(promoted))
    route = _route(cluster)
    assert route is not None
    assert (weights(route), mirrors(route)) == ([("churn-prod-r2", 100)], [])
    assert "Service/churn-prod-r3" not in cluster.names()

    target.delete(promoted)
    assert cluster.names() == set()


def test_a_route_left_by_an_earlier_gateway_parent_is_pruned() -> None:
    cluster = FakeCluster()
    deployment = canary_deployment()
    _target(cluster).apply(deployment, packages_of(deployment))
    assert _route(cluster) is not None

    _target(cluster, parent=None).apply(deployment, packages_of(deployment))

    assert _route(cluster) is None
    assert "Service/churn-prod-r2" in cluster.names()


def test_apply_refuses_a_route_of_the_same_name_that_is_not_ours() -> None:
    cluster = FakeCluster()
    theirs = route_in(routed(make_deployment(project="other")))
    cluster.objects[("HTTPRoute", "default", "churn-prod")] = theirs
    ours = make_deployment()

    with pytest.raises(ConflictError, match="HTTPRoute default/churn-prod already exists"):
        _target(cluster).apply(ours, packages_of(ours))
    assert cluster.applied == []


@pytest.fixture
def control(tmp_path: Path) -> Iterator[tuple[DeploymentControl, FakeCluster]]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'loopml.db'}")
    store.upgrade()
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    package = package_files(tmp_path / "pkg")
    for _ in range(3):  # cancer/1, cancer/2, cancer/3
        register_files(store, artifacts, package)
    cluster = FakeCluster()
    plane = DeploymentControl(store, artifacts, {"kubernetes": _target(cluster)}, tmp_path / "d")
    yield plane, cluster
    store.dispose()


def _live_route(cluster: FakeCluster) -> tuple[list[tuple[str, int]], list[str]]:
    route = cluster.objects[("HTTPRoute", "default", "cancer-api")]
    assert route_problems(route) == []
    return weights(route), mirrors(route)


def test_canary_moves_through_the_control_plane_change_the_weights(
    control: tuple[DeploymentControl, FakeCluster],
) -> None:
    plane, cluster = control
    spec = {"model": "cancer/1", "target": "kubernetes"}
    plane.create("default", "cancer-api", spec, actor="t")
    assert _live_route(cluster) == ([("cancer-api-r1", 100)], [])

    canary = {"model": "cancer/2", "percent": 10, "auto": False}
    deployment = plane.update("default", "cancer-api", {"canary": canary}, actor="t")
    assert deployment.traffic == {1: 90, 2: 10}
    assert _live_route(cluster) == ([("cancer-api-r1", 90), ("cancer-api-r2", 10)], [])

    moved = {"canary": {**canary, "percent": 40}, "shadow": "cancer/3"}
    deployment = plane.update("default", "cancer-api", moved, actor="t")
    shadow = deployment.shadow_revision
    assert shadow is not None
    assert _live_route(cluster) == (
        [("cancer-api-r1", 60), ("cancer-api-r2", 40)],
        [f"cancer-api-r{shadow}"],
    )
    applied = cluster.objects[("HTTPRoute", "default", "cancer-api")]
    manifests = list(cluster.objects.values())
    assert reference_problems(applied, manifests, deployment) == []

    plane.update("default", "cancer-api", {"model": "cancer/2", "canary": None}, actor="t")
    (live,), mirrored = _live_route(cluster)
    assert live[1] == 100
    assert mirrored == [f"cancer-api-r{shadow}"]

    plane.delete("default", "cancer-api", actor="t")
    assert cluster.objects == {}


# ------------------------------------------------------------ settings, docs, RBAC


def test_the_setting_reaches_the_target(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        kubernetes={"enabled": True, "platform_url": URL, "gateway_parent": PARENT},
    )
    target = open_targets(settings, tmp_path)["kubernetes"]

    assert isinstance(target, KubernetesTarget)
    assert target.gateway_parent == PARENT
    assert route_in(target.render(make_deployment()))["spec"]["parentRefs"][0]["name"] == "public"
    with pytest.raises(pydantic.ValidationError, match="gateway_parent"):
        Settings(home=tmp_path, kubernetes={"gateway_parent": "Not/Valid"})


def test_a_cluster_without_the_gateway_api_says_what_to_install_or_unset() -> None:
    """The kubernetes client's discovery, answering as a cluster without the CRDs does."""
    from kubernetes.dynamic import exceptions

    class Resources:
        def get(self, *, api_version: str, kind: str) -> Any:
            if kind == "HTTPRoute":
                raise exceptions.ResourceNotFoundError(f"No matches found for {kind}")
            return object()

    class Discovery:
        resources = Resources()

    api = _DynamicApi(lambda _: Discovery(), None, exceptions)
    assert api.list(f"{GROUP}/v1", "HTTPRoute", "default", "a=b") == []  # pruning goes on
    with pytest.raises(ConfigurationError, match="Gateway API CRDs installed") as info:
        api.get(f"{GROUP}/v1", "HTTPRoute", "default", "churn-prod")
    assert "kubernetes.gateway_parent" in info.value.message


def _docs_route() -> Manifest:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    (block,) = [b for b in blocks if "kind: HTTPRoute" in b]
    found: Manifest = yaml.safe_load(block)
    return found


def test_the_route_in_the_docs_is_what_render_gives() -> None:
    deployment = canary_and_shadow()
    manifests = render(
        deployment,
        image=IMAGE,
        platform_url=URL,
        namespace="models",
        gateway_parent=PARENT,
        packages=packages_of(deployment),
    )

    assert _docs_route() == route_in(manifests)


def test_the_rbac_example_lets_the_platform_manage_routes() -> None:
    documents = [
        d
        for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "rbac.yaml").read_text())
        if d
    ]
    role = next(d for d in documents if d["kind"] == "Role")
    verbs = {
        verb
        for rule in role["rules"]
        if GROUP in rule["apiGroups"] and "httproutes" in rule["resources"]
        for verb in rule["verbs"]
    }

    assert {"get", "list", "create", "patch", "delete"} <= verbs
