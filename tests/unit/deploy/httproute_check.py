"""A structural check of a Gateway API ``HTTPRoute`` (``gateway.networking.k8s.io/v1``),
for the Kubernetes target's tests.

HTTPRoute is a CRD that kubernetes-validate's bundled schemas do not hold, and no package on
PyPI ships its schema, so ``route_problems`` checks a route against the fields, types, bounds
and CEL rules of the upstream CRD's ``v1`` schema (standard channel) that a route like the
target's can break. It takes what both v1.0, the first release with ``v1``, and v1.6 accept
(v1.0's fields, the smaller limits), so a route it passes is one every ``v1`` cluster takes,
and it refuses unknown fields (a cluster would silently prune them).
``reference_problems`` then checks it against the objects rendered with it: every backend a
rendered revision Service on one of its ports, the weights the deployment's traffic, the
shadow mirrored and never weighted.
"""

from __future__ import annotations

import re
from typing import Any

from loopml.core.deployments import Deployment
from loopml.deploy.targets.kubernetes import Manifest

GROUP = "gateway.networking.k8s.io"

# From the CRD's openAPIV3Schema (v1, as of v1.0): the fields each object may hold. Later
# releases add rules[].name and .timeouts, parentRefs[].port, requestMirror.percent and
# .fraction, and the CORS filter.
_ROUTE_FIELDS = {"apiVersion", "kind", "metadata", "spec"}
_SPEC_FIELDS = {"parentRefs", "hostnames", "rules"}
_PARENT_FIELDS = {"group", "kind", "namespace", "name", "sectionName"}
_RULE_FIELDS = {"matches", "filters", "backendRefs"}
_MATCH_FIELDS = {"path", "headers", "queryParams", "method"}
_BACKEND_FIELDS = {"group", "kind", "name", "namespace", "port", "weight", "filters"}
_MIRROR_FIELDS = {"backendRef"}
_OBJECT_REF_FIELDS = {"group", "kind", "name", "namespace", "port"}
_FILTERS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
}
_REWRITES = {"ReplacePrefixMatch": "replacePrefixMatch", "ReplaceFullPath": "replaceFullPath"}
_UNREPEATABLE = {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"}
_PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _fields(where: str, value: Any, allowed: set[str], required: set[str]) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {type(value).__name__}"]
    problems = [f"{where}: unknown field {key!r}" for key in sorted(set(value) - allowed)]
    problems += [f"{where}: missing {key!r}" for key in sorted(required - set(value))]
    return problems


def _list(where: str, value: Any, low: int, high: int) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: expected a list, got {type(value).__name__}"]
    if not low <= len(value) <= high:
        return [f"{where}: {len(value)} items, expected {low} to {high}"]
    return []


def _object_ref(where: str, ref: Any, allowed: set[str], *, backend: bool = True) -> list[str]:
    problems = _fields(where, ref, allowed, {"name"})
    if problems:
        return problems
    name = ref["name"]
    if not (isinstance(name, str) and 1 <= len(name) <= 253):
        problems.append(f"{where}.name: {name!r} is not 1 to 253 characters")
    if "namespace" in ref and not _DNS1123_LABEL.fullmatch(str(ref["namespace"])):
        problems.append(f"{where}.namespace: {ref['namespace']!r} is not a DNS label")
    # CEL "Must have port for Service reference" (group "" and kind Service are the defaults).
    is_service = ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"
    if backend and is_service and "port" not in ref:
        problems.append(f"{where}: a Service reference needs a port")
    if "port" in ref and not _is_int(ref["port"], 1, 65535):
        problems.append(f"{where}.port: {ref['port']!r} is not a port")
    if "weight" in ref and not _is_int(ref["weight"], 0, 1_000_000):
        problems.append(f"{where}.weight: {ref['weight']!r} is not an integer 0 to 1000000")
    return problems


def _path_match(where: str, match: Any) -> list[str]:
    problems = _fields(where, match, _MATCH_FIELDS, set())
    path = match.get("path") if isinstance(match, dict) else None
    if problems or path is None:
        return problems
    problems = _fields(f"{where}.path", path, {"type", "value"}, set())
    kind, value = path.get("type", "PathPrefix"), path.get("value", "/")
    if kind not in {"Exact", "PathPrefix", "RegularExpression"}:
        problems.append(f"{where}.path.type: {kind!r}")
    if not isinstance(value, str) or len(value) > 1024:
        return [*problems, f"{where}.path.value: {value!r} is not a string of <= 1024"]
    if kind in {"Exact", "PathPrefix"}:
        bad = (
            not value.startswith("/")
            or any(part in value for part in ("//", "/./", "/../", "%2f", "%2F", "#"))
            or value.endswith(("/..", "/."))
            or not _PATH_CHARS.fullmatch(value)
        )
        if bad:
            problems.append(f"{where}.path.value: {value!r} is not an absolute, clean path")
    return problems


def _filter(where: str, item: Any) -> list[str]:
    if not isinstance(item, dict) or item.get("type") not in _FILTERS:
        return [f"{where}: type {item.get('type') if isinstance(item, dict) else item!r}"]
    member = _FILTERS[item["type"]]
    # CEL: the member named by the type is set, and no other.
    problems = _fields(where, item, {"type", member}, {"type", member})
    if problems:
        return problems
    body = item[member]
    if item["type"] == "RequestMirror":
        problems += _fields(f"{where}.{member}", body, _MIRROR_FIELDS, {"backendRef"})
        if not problems:
            ref = body["backendRef"]
            problems += _object_ref(f"{where}.{member}.backendRef", ref, _OBJECT_REF_FIELDS)
    elif item["type"] == "URLRewrite":
        problems += _fields(f"{where}.{member}", body, {"hostname", "path"}, set())
        path = body.get("path") if isinstance(body, dict) else None
        if isinstance(path, dict):
            # CEL: the type names the one replacement that is set.
            value = _REWRITES.get(path.get("type"))
            if value is None:
                problems.append(f"{where}.{member}.path.type: {path.get('type')!r}")
            else:
                problems += _fields(f"{where}.{member}.path", path, {"type", value}, {value})
    return problems


def _rule(where: str, rule: Any) -> list[str]:
    problems = _fields(where, rule, _RULE_FIELDS, set())
    if problems:
        return problems
    matches, filters = rule.get("matches", []), rule.get("filters", [])
    backends = rule.get("backendRefs", [])
    problems += _list(f"{where}.matches", matches, 0, 8)  # 64 from v1.1
    problems += _list(f"{where}.filters", filters, 0, 16)
    problems += _list(f"{where}.backendRefs", backends, 0, 16)
    if problems:
        return problems
    for index, match in enumerate(matches):
        problems += _path_match(f"{where}.matches[{index}]", match)
    for index, item in enumerate(filters):
        problems += _filter(f"{where}.filters[{index}]", item)
    for index, ref in enumerate(backends):
        problems += _object_ref(f"{where}.backendRefs[{index}]", ref, _BACKEND_FIELDS)
    types = [f.get("type") for f in filters if isinstance(f, dict)]
    problems += [f"{where}: {t} repeated" for t in _UNREPEATABLE if types.count(t) > 1]
    if "RequestRedirect" in types and ("URLRewrite" in types or backends):
        problems.append(f"{where}: RequestRedirect with URLRewrite or backendRefs")
    prefix_rewrite = any(
        f.get("type") == "URLRewrite"
        and ((f.get("urlRewrite") or {}).get("path") or {}).get("type") == "ReplacePrefixMatch"
        for f in filters
    )
    paths = [m.get("path") or {} for m in matches]
    prefixes = [p for p in paths if p.get("type", "PathPrefix") == "PathPrefix"]
    if prefix_rewrite and (len(matches) != 1 or len(prefixes) != 1):
        problems.append(f"{where}: ReplacePrefixMatch needs exactly one PathPrefix match")
    return problems


def route_problems(route: Manifest) -> list[str]:
    """What in ``route`` a cluster with the Gateway API CRDs would refuse or drop."""
    problems = _fields("route", route, _ROUTE_FIELDS, _ROUTE_FIELDS)
    if problems:
        return problems
    if (route["apiVersion"], route["kind"]) != (f"{GROUP}/v1", "HTTPRoute"):
        problems.append(f"route: {route['apiVersion']} {route['kind']}")
    meta = route["metadata"]
    if not (_DNS1123_SUBDOMAIN.fullmatch(meta.get("name", "")) and len(meta["name"]) <= 253):
        problems.append(f"metadata.name: {meta.get('name')!r}")
    if not _DNS1123_LABEL.fullmatch(meta.get("namespace", "")):
        problems.append(f"metadata.namespace: {meta.get('namespace')!r}")
    for key, value in (meta.get("labels") or {}).items():
        if not (isinstance(value, str) and len(value) <= 63 and _LABEL_VALUE.fullmatch(value)):
            problems.append(f"metadata.labels[{key}]: {value!r}")
    for key, value in (meta.get("annotations") or {}).items():
        if not isinstance(value, str):
            problems.append(f"metadata.annotations[{key}]: not a string: {value!r}")
    spec = route["spec"]
    problems += _fields("spec", spec, _SPEC_FIELDS, set())
    if problems:
        return problems
    parents, rules = spec.get("parentRefs", []), spec.get("rules", [])
    problems += _list("spec.parentRefs", parents, 0, 32) + _list("spec.rules", rules, 1, 16)
    if problems:
        return problems
    for index, parent in enumerate(parents):
        where = f"spec.parentRefs[{index}]"
        problems += _object_ref(where, parent, _PARENT_FIELDS, backend=False)
    for index, rule in enumerate(rules):
        problems += _rule(f"spec.rules[{index}]", rule)
    return problems


def reference_problems(
    route: Manifest, manifests: list[Manifest], deployment: Deployment
) -> list[str]:
    """Whether ``route`` sends each revision its traffic and the shadow its copy, through
    Services ``manifests`` hold (on their ports, selecting that revision's pods)."""
    namespace = route["metadata"]["namespace"]
    services = {
        m["metadata"]["name"]: m
        for m in manifests
        if m["kind"] == "Service" and m["metadata"]["namespace"] == namespace
    }
    pods = {
        m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"]
        for m in manifests
        if m["kind"] == "Deployment"
    }

    def revision_of(where: str, ref: dict[str, Any], problems: list[str]) -> int | None:
        service = services.get(ref["name"])
        if service is None or ref.get("namespace", namespace) != namespace:
            problems.append(f"{where}: no rendered Service {ref['name']!r} in {namespace}")
            return None
        if ref.get("port") not in [p["port"] for p in service["spec"]["ports"]]:
            problems.append(f"{where}: Service {ref['name']} has no port {ref.get('port')}")
        selected = [
            labels
            for labels in pods.values()
            if service["spec"]["selector"].items() <= labels.items()
        ]
        revisions = {labels["loopml.io/revision"] for labels in selected}
        if len(revisions) != 1:
            problems.append(f"{where}: Service {ref['name']} selects revisions {revisions}")
            return None
        return int(revisions.pop())

    problems: list[str] = []
    (rule,) = route["spec"]["rules"]
    given: dict[int, int] = {}
    for index, ref in enumerate(rule["backendRefs"]):
        number = revision_of(f"backendRefs[{index}]", ref, problems)
        if number is not None:
            given[number] = given.get(number, 0) + ref.get("weight", 1)
    mirrored = [
        revision_of("requestMirror", f["requestMirror"]["backendRef"], problems)
        for f in rule.get("filters", [])
        if f["type"] == "RequestMirror"
    ]
    live = {number: percent for number, percent in deployment.traffic.items() if percent > 0}
    if given != live:
        problems.append(f"weights {given} are not the traffic {live}")
    if sum(given.values()) != 100:
        problems.append(f"weights sum to {sum(given.values())}, not 100")
    shadow = deployment.shadow_revision
    expected = [shadow] if shadow is not None and shadow not in live else []
    if mirrored != expected:
        problems.append(f"mirrored to {mirrored}, expected {expected}")
    if set(mirrored) & set(given):
        problems.append(f"revisions {set(mirrored) & set(given)} both mirrored and weighted")
    return problems
