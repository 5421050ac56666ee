"""What the platform and its gateway processes say to each other, as bytes.

Two messages, both over the platform's loopback HTTP, both carrying the secret the platform
gave its gateway processes (``SECRET_HEADER``):

- **The route table** (platform → gateway, ``GET /internal/gateway/routes?after=V``): every
  deployment's routes as the local target publishes them, with a version that moves on every
  change, and the two rules the gateway checks on its own (whether authentication is on, and
  the body limit). JSON.
- **The report** (gateway → platform, ``POST /internal/gateway/report``, about every 100 ms):
  the deployments that got requests (scale-to-zero's idle clock), each answer's metrics
  sample, and each answer a client got, for the prediction log. A JSON head on one line,
  then the answers' request and response bodies back to back, as they were (no base64, no
  re-encoding): the head says each one's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from loopml.predictions.intake import Answer
from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes

ROUTES_PATH = "/internal/gateway/routes"
REPORT_PATH = "/internal/gateway/report"
SECRET_HEADER = "x-loopml-gateway-secret"  # noqa: S105 - a header's name
ALLOWED_HEADER = "x-loopml-allowed"
"""On a relayed answer: the platform allowed the token (see ``loopml.platform.serving_auth``)."""
SECRET_ENV = "LOOPML_GATEWAY_SECRET"  # noqa: S105 - a variable's name


@dataclass(frozen=True)
class GatewayDeployment:
    """One deployment as a gateway process holds it.

    Attributes:
        routes: its routes, with backends of the gateway process's own (``failed`` is its
            own view).
        lean: whether the gateway process may serve it itself: replicas ready, no shadow,
            no feature views. Otherwise its requests go to the platform, which serves them as
            it always has.
        open: whether a caller needs no token (authentication off, or ``auth: none``); if
            one does, the gateway process serves only tokens the platform allowed lately.
        models: the names a V2 path may call it by (its own and its revisions' models).
    """

    routes: Routes
    lean: bool
    models: frozenset[str]
    open: bool = True


@dataclass(frozen=True)
class RouteTable:
    """The route table at one version."""

    version: int = 0
    auth_enabled: bool = True
    max_body_bytes: int = 1024 * 1024
    allowed_hosts: frozenset[str] = frozenset()
    """Host names a request may name in ``Host`` (``*``: any), as the platform's guard."""
    deployments: dict[tuple[str, str], GatewayDeployment] = field(default_factory=dict)
    by_model: dict[str, str] = field(default_factory=dict)
    """Default-project deployments by the one model each serves (a model served by two or
    more is left out: its V2 root path goes to the platform, which says which to name)."""


def routes_document(
    routes: list[Routes], *, auth_enabled: bool, max_body_bytes: int, allowed_hosts: list[str]
) -> bytes:
    """The route table's content (without its version), sorted so that equal tables are
    equal bytes."""
    deployments = [
        {
            "project": r.project,
            "name": r.name,
            "asleep": r.asleep,
            "auth": r.auth,
            "features": r.features is not None,
            "shadow": r.shadow is not None,
            "revisions": [
                {
                    "number": rev.number,
                    "model": rev.model,
                    "version": rev.version,
                    "weight": rev.weight,
                    "role": rev.role,
                    "backends": sorted(b.url for b in rev.backends),
                }
                for rev in r.revisions
            ],
        }
        for r in sorted(routes, key=lambda r: (r.project, r.name))
    ]
    return orjson.dumps(
        {
            "auth_enabled": auth_enabled,
            "max_body_bytes": max_body_bytes,
            "allowed_hosts": sorted(allowed_hosts),
            "deployments": deployments,
        }
    )


def versioned(version: int, document: bytes) -> bytes:
    """``document`` with its version (a JSON object with one more key)."""
    return b'{"version":' + str(version).encode("ascii") + b"," + document[1:]


def parse_route_table(content: bytes) -> RouteTable:
    """The route table a gateway process holds, from the platform's answer."""
    data = orjson.loads(content)
    auth_enabled = bool(data["auth_enabled"])
    deployments: dict[tuple[str, str], GatewayDeployment] = {}
    serving: dict[str, list[str]] = {}
    for item in data["deployments"]:
        deployment = _deployment(item, auth_enabled)
        routes = deployment.routes
        deployments[(routes.project, routes.name)] = deployment
        if routes.project == "default":
            for model in {r.model for r in routes.revisions}:
                serving.setdefault(model, []).append(routes.name)
    by_model = {model: names[0] for model, names in serving.items() if len(names) == 1}
    return RouteTable(
        version=int(data["version"]),
        auth_enabled=auth_enabled,
        max_body_bytes=int(data["max_body_bytes"]),
        allowed_hosts=frozenset(str(h) for h in data["allowed_hosts"]),
        deployments=deployments,
        by_model=by_model,
    )


def _deployment(item: dict[str, Any], auth_enabled: bool) -> GatewayDeployment:
    revisions = tuple(
        RevisionRoute(
            number=int(rev["number"]),
            model=str(rev["model"]),
            version=int(rev["version"]),
            weight=int(rev["weight"]),
            backends=tuple(
                Backend(str(url), int(rev["number"]), str(rev["model"]), int(rev["version"]))
                for url in rev["backends"]
            ),
            role=str(rev["role"]),
        )
        for rev in item["revisions"]
    )
    routes = Routes(
        project=str(item["project"]),
        name=str(item["name"]),
        revisions=revisions,
        asleep=bool(item["asleep"]),
        auth=str(item["auth"]),
    )
    lean = (
        not routes.asleep
        and not item["shadow"]
        and not item["features"]
        and any(r.backends for r in revisions)
    )
    models = frozenset({routes.name} | {r.model for r in revisions})
    return GatewayDeployment(routes, lean, models, not auth_enabled or routes.auth == "none")


Observation = tuple[str, str, str, str, str, int, float, str | None, str]
"""One answer's metrics sample: project, deployment, model, version, revision, status,
seconds, error code and caller (``GatewayMetrics.observe``'s arguments)."""


@dataclass
class Report:
    """What a gateway process tells the platform since its last report."""

    touched: set[tuple[str, str]] = field(default_factory=set)
    observed: list[Observation] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    """Each answer a client got, for the prediction log as it is (``PredictionLog.log_answer``)."""
    process: int = 0
    """The gateway process's id (its in-flight counts replace its last ones)."""
    inflight: dict[str, int] = field(default_factory=dict)
    """Requests in flight now, by replica URL (those with none left out)."""

    def __bool__(self) -> bool:
        return bool(self.touched or self.observed or self.answers or self.inflight)

    def trim(self, limit: int) -> int:
        """Drop the oldest answers and metrics samples past ``limit`` of each; returns how
        many answers went."""
        if len(self.observed) > limit:
            del self.observed[: len(self.observed) - limit]
        over = len(self.answers) - limit
        if over <= 0:
            return 0
        del self.answers[:over]
        return over


def encode_report(report: Report) -> bytes:
    """The report as one body: a JSON head line, then the answers' bodies."""
    answers: list[list[Any]] = []
    bodies: list[bytes] = []
    for a in report.answers:
        answers.append(
            [
                a.project,
                a.deployment,
                a.revision,
                a.model,
                a.version,
                a.role,
                a.inference_id,
                a.path,
                a.status,
                a.latency_s,
                a.arrived,
                len(a.request_body),
                len(a.body),
            ]
        )
        bodies += [a.request_body, a.body]
    head = orjson.dumps(
        {
            "process": report.process,
            "inflight": report.inflight,
            "touched": sorted(report.touched),
            "observed": report.observed,
            "answers": answers,
        }
    )
    return b"".join([head, b"\n", *bodies])


def decode_report(content: bytes) -> Report:
    """The report ``encode_report`` made.

    Raises:
        ValueError: the body is not a report (its head does not parse, or the bodies it
            announces are not all there).
    """
    head, newline, rest = content.partition(b"\n")
    if not newline:
        raise ValueError("a report is a JSON head line, then the answers' bodies")
    data = orjson.loads(head)
    report = Report(
        process=int(data["process"]),
        inflight={str(url): int(n) for url, n in data["inflight"].items()},
        touched={(str(p), str(n)) for p, n in data["touched"]},
        observed=[
            (
                str(p),
                str(n),
                str(m),
                str(v),
                str(r),
                int(s),
                float(t),
                None if c is None else str(c),
                str(who),
            )
            for p, n, m, v, r, s, t, c, who in data["observed"]
        ],
    )
    at = 0
    for item in data["answers"]:
        (project, deployment, revision, model, version, role, inference_id, path) = item[:8]
        status, latency_s, arrived, request_length, body_length = item[8:]
        request_body = rest[at : at + int(request_length)]
        at += int(request_length)
        body = rest[at : at + int(body_length)]
        at += int(body_length)
        report.answers.append(
            Answer(
                str(project),
                str(deployment),
                int(revision),
                str(model),
                int(version),
                str(role),
                str(inference_id),
                str(path),
                int(status),
                float(latency_s),
                float(arrived),
                request_body,
                body,
            )
        )
    if at != len(rest):
        raise ValueError(f"the report announces {at} bytes of bodies; it carries {len(rest)}")
    return report
