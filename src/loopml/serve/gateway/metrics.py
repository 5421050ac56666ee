"""The gateway's Prometheus metrics (``prometheus-client``, one registry per gateway).

| metric | type | labels |
|---|---|---|
| ``loopml_gateway_requests_total`` | counter | project, deployment, model, version, |
| | | revision, status |
| ``loopml_gateway_errors_total`` | counter | project, deployment, model, version, code |
| ``loopml_gateway_request_duration_seconds`` | histogram | project, deployment, model, |
| | | version |
| ``loopml_gateway_shadow_requests_total`` | counter | project, deployment, model, version, |
| | | outcome (ok, error, unreachable, dropped) |
| ``loopml_gateway_activations_total`` | counter | project, deployment |
| ``loopml_gateway_retries_total`` | counter | project, deployment |
| ``loopml_gateway_refused_requests_total`` | counter | project, deployment, code |
| ``loopml_deployment_replicas_ready`` | gauge | project, deployment, revision, model, version |

Requests no replica answered (no such deployment, or the activator gave up) carry ``model``
and ``version`` ``""``. A request refused before any model saw it with a 4xx (a GET on an
infer path, an unknown V2 route) is only in ``loopml_gateway_refused_requests_total``.

Requests per caller are not a Prometheus series (a label per token would grow the scrape
with every token): ``GatewayMetrics.callers`` counts them in memory, cumulative, by
(project, deployment, model, version, caller), for the monitor to read each round. The
caller is what the serving check put in the request's scope under ``CALLER`` (the token's
principal as events name it, ``user:ada/token:<id>``, never the secret), else ``anonymous``
(a deployment with ``auth: none``, or authentication off).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loopml.serve.gateway.routing import Routes
from loopml.serve.metrics import LATENCY_BUCKETS

_DEPLOYMENT = ("project", "deployment")
_Children = tuple[Any, Any, Any]
"""The labelled requests counter, latency histogram and errors counter (or ``None``)."""
_VERSION = (*_DEPLOYMENT, "model", "version")
CALLER = "loopml.caller"
"""The ASGI scope key where the serving check names the caller."""
ANONYMOUS = "anonymous"
OTHER = "other"
MAX_CALLER_KEYS = 100_000
"""Distinct (deployment, version, caller) counted before new callers count as ``OTHER``."""
CallerKey = tuple[str, str, str, str, str]


class _ReplicaGauge(Collector):
    """Ready replicas per revision, read from the routes at each scrape."""

    def __init__(self, routes: Callable[[], list[Routes]]) -> None:
        self._routes = routes

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "loopml_deployment_replicas_ready",
            "Replicas in a deployment's routes now.",
            labels=("project", "deployment", "revision", "model", "version"),
        )
        for route in self._routes():
            for revision in (*route.revisions, *((route.shadow,) if route.shadow else ())):
                labels = (
                    route.project,
                    route.name,
                    str(revision.number),
                    revision.model,
                    str(revision.version),
                )
                gauge.add_metric(labels, len(revision.backends))
        yield gauge


class GatewayMetrics:
    """Counters and histograms of the gateway (see the module docstring)."""

    def __init__(self, routes: Callable[[], list[Routes]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "loopml_gateway_requests",
            "Requests routed to a deployment, by the revision that answered and HTTP status.",
            (*_VERSION, "revision", "status"),
            registry=registry,
        )
        self.errors = Counter(
            "loopml_gateway_errors",
            "Requests answered with an error, by error code.",
            (*_VERSION, "code"),
            registry=registry,
        )
        self.refused = Counter(
            "loopml_gateway_refused_requests",
            "Requests refused before any model saw them (a wrong method, an unknown V2 route, "
            "a missing feature value), by error code: not the deployment's errors.",
            ("project", "deployment", "code"),
            registry=registry,
        )
        self.latency = Histogram(
            "loopml_gateway_request_duration_seconds",
            "Time from a request reaching the gateway to its answer.",
            _VERSION,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.shadow = Counter(
            "loopml_gateway_shadow_requests",
            "Copies sent to a shadow revision, by outcome (ok, error, unreachable, dropped).",
            (*_VERSION, "outcome"),
            registry=registry,
        )
        self.activations = Counter(
            "loopml_gateway_activations",
            "Requests that found no ready replica and waited for one to start.",
            _DEPLOYMENT,
            registry=registry,
        )
        self.retries = Counter(
            "loopml_gateway_retries",
            "Requests sent again to another replica after a connection failed.",
            _DEPLOYMENT,
            registry=registry,
        )
        registry.register(_ReplicaGauge(routes))
        self._children: dict[tuple[tuple[str, ...], str, int, str | None], _Children] = {}
        self.callers: dict[CallerKey, int] = {}
        """Requests so far by (project, deployment, model, version, caller)."""

    def observe(
        self,
        key: tuple[str, str],
        model: str,
        version: str,
        revision: str,
        status: int,
        seconds: float,
        code: str | None,
        caller: str = ANONYMOUS,
    ) -> None:
        """One answered request."""
        labels = (*key, model, version)
        children = self._children.get((labels, revision, status, code))
        if children is None:
            children = self._children_of(labels, revision, status, code)
        children[0].inc()
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].inc()
        # A plain dict on the event loop's thread: the monitor copies it (``dict.copy`` holds
        # the GIL throughout), so no lock on the hot path.
        counted = (key[0], key[1], model, version, caller)
        callers = self.callers
        if counted in callers:
            callers[counted] += 1
        else:
            if len(callers) >= MAX_CALLER_KEYS:
                counted = (key[0], key[1], model, version, OTHER)
            callers[counted] = callers.get(counted, 0) + 1

    def _children_of(
        self, labels: tuple[str, ...], revision: str, status: int, code: str | None
    ) -> _Children:
        # ``labels()`` takes a lock and builds keys on every call: the hot path looks the
        # labelled children up once per label set and keeps them. The label sets are bounded
        # (deployments x revisions x statuses x codes): names in URLs never get here.
        children: _Children = (
            self.requests.labels(*labels, revision, str(status)),
            self.latency.labels(*labels),
            None if code is None else self.errors.labels(*labels, code),
        )
        self._children[(labels, revision, status, code)] = children
        return children

    def render(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)
