"""Automatic canaries with real replicas: the platform's gateway logs every answer, labels
come back through the feedback API, the monitor's loop builds its windows, and the
reconciler's canary watch judges them. A canary whose answers are wrong (by the labels) is
rolled back with no failed request, one whose model fails is rolled back and the failures
stop, and a good one is promoted once its time is up. Each decision is an event with the
numbers behind it.

One platform serves the module, on SQLite then on PostgreSQL; its models: version 1 a
logistic regression on the cancer data, version 2 the same trained on flipped labels (wrong
about 90 % of the time), version 3 a second good one, version 4 one trained on other column
names (every request it gets fails with 422). The control plane refuses such a canary
(``core.serving_inputs``) when it knows the signatures, so version 4's recorded signature is
blanked, as for a package that recorded none: the only way such a canary still serves.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

import loopml
from loopml.core.canary import CanaryPolicy
from loopml.core.deployments import Canary, DeploymentStatus
from loopml.core.types import Event
from loopml.deploy.canary import CanaryDefaults, policy_of
from loopml.registry import register_version
from loopml.settings import Settings
from loopml.store import events
from tests.unit.deploy.deploy_support import (
    LabelledTraffic as Traffic,
)
from tests.unit.deploy.deploy_support import (
    Platform,
    cancer_frame,
    fit,
    replica_processes,
    wait_until,
)

pytestmark = pytest.mark.timeout(300)
PROJECT = "default"
# Margins wide enough that only the figure a test is about decides: latency on a shared
# two-core machine is noise, and the other tests' canaries must not trip on it.
QUIET = {"max_latency_ratio": 1000, "latency_slack_ms": 60_000}


def _register(platform: Platform, model: Any, columns: list[str] | None = None) -> int:
    frame, _ = cancer_frame()
    sample = frame.head(20) if columns is None else frame.head(20).set_axis(columns, axis=1)
    with loopml.start_run("canary-tests", settings=platform.settings) as run:
        run.log_model(model, sample=sample)
    version = register_version(
        platform.store,
        platform.artifacts,
        project=PROJECT,
        model_name="cancer",
        run_id=run.id,
        actor="t",
    )
    return version.version


def _unsigned(platform: Platform, version: int) -> None:
    """Forget the signature the store recorded for ``version``'s package."""
    from loopml.registry import get_version
    from loopml.store.orm import LoggedModelRow

    found = get_version(platform.store, PROJECT, "cancer", version)
    with platform.store.session() as session:
        row = session.get(LoggedModelRow, found.logged_model_id)
        assert row is not None
        row.signature = {}


def _flipped() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = cancer_frame()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(frame, 1 - target)


def _renamed() -> Any:
    from sklearn.linear_model import LogisticRegression

    frame, target = cancer_frame()
    renamed = frame.set_axis([f"g{i}" for i in range(8)], axis=1)
    return LogisticRegression(max_iter=500).fit(renamed, target)


@contextmanager
def _database(request: pytest.FixtureRequest, home: Path) -> Iterator[str]:
    """A SQLite file in ``home``, or a PostgreSQL schema of its own for the module."""
    if request.param == "sqlite":
        yield f"sqlite:///{home / 'loopml.db'}"
        return
    import psycopg

    base = str(request.getfixturevalue("postgres_database"))
    schema = f"canary_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("canary-home")
    with _database(request, home) as url:
        yield from _platform(home, url)


def _platform(home: Path, url: str) -> Iterator[Platform]:
    settings = Settings(
        home=home,
        database={"url": url},
        artifacts={"root": str(home / "artifacts")},
        # The lag must exceed the prediction log's flush delay (1 s).
        monitor={"interval_s": 0.5, "lag_s": 2, "windows": ["1h"]},
        canary={"interval_s": 0.5},
    )
    running = Platform(settings)
    running.start()
    try:
        versions = [
            _register(running, fit(1.0)),
            _register(running, _flipped()),
            _register(running, fit(0.3)),
            _register(running, _renamed(), [f"g{i}" for i in range(8)]),
        ]
        assert versions == [1, 2, 3, 4]
        _unsigned(running, 4)
        yield running
    finally:
        running.stop()
    assert replica_processes() == [], "replicas outlived the platform"


def _deploy(platform: Platform, name: str, canary: dict[str, Any]) -> None:
    spec = {"model": "cancer/1", "canary": {"percent": 50, "auto": True, **QUIET, **canary}}
    platform.serving.control.create(PROJECT, name, spec, actor="t")

    def ready() -> bool:
        found = platform.serving.control.get(PROJECT, name)
        assert found.status != DeploymentStatus.FAILED, found.status_message
        return found.status == DeploymentStatus.READY

    wait_until(ready, 90, f"deployment {name} did not become ready")


def _decision(platform: Platform, name: str, kind: str) -> Event | None:
    with platform.store.session() as session:
        found = events.list_(session, type=kind, project=PROJECT, limit=100).items
    return next((e for e in found if e.subject == name), None)


def _delete(platform: Platform, name: str) -> None:
    platform.serving.control.delete(PROJECT, name, actor="t")
    assert replica_processes(name) == []


def _listed(targets: Path, name: str) -> list[str]:
    """The versions of ``name``'s replicas in the Prometheus targets file."""
    groups = orjson.loads(targets.read_bytes()) if targets.exists() else []
    return sorted(g["labels"]["version"] for g in groups if g["labels"]["deployment"] == name)


def _routed_to(platform: Platform, name: str, revisions: set[int]) -> float:
    """Wait until the gateway routes the deployment to ``revisions`` only; when it did."""

    def routed() -> bool:
        routes = platform.serving.local.routes(PROJECT, name)
        return routes is not None and {r.number for r in routes.revisions} == revisions

    wait_until(routed, 30, f"{name} was not routed to {revisions}")
    return time.monotonic()


def _settled(platform: Platform, name: str) -> Event:
    """Wait for the canary to leave the spec; the decision's event."""
    wait_until(
        lambda: platform.serving.control.get(PROJECT, name).spec.canary is None,
        120,
        f"the canary of {name} was never decided",
    )
    kinds = ("deployment.canary.rolled_back", "deployment.canary.promoted")
    found = [e for kind in kinds if (e := _decision(platform, name, kind)) is not None]
    assert len(found) == 1, found
    return found[0]


def test_a_canary_worse_by_its_labels_is_rolled_back_with_no_failed_request(
    platform: Platform,
) -> None:
    name = "judged"
    _deploy(
        platform,
        name,
        {
            "model": "cancer/2",
            "min_requests": 20,
            "min_labels": 20,
            "max_quality_drop": 0.2,
            "max_error_rate_increase": 0.5,
            "promote_after_s": 3600,
        },
    )
    targets = platform.settings.home / "prometheus" / "targets.json"
    with Traffic(platform, name) as traffic:
        wait_until(lambda: len(traffic.answers) >= 5, 60, "no answers")
        # The replicas are listed for Prometheus within a reconciler round.
        wait_until(lambda: _listed(targets, name) == ["1", "2"], 10, "replicas not listed")
        event = _settled(platform, name)
        # The canary's replica drains, then stops: afterwards only version 1 answers.
        wait_until(lambda: replica_processes(name) and len(replica_processes(name)) == 1, 60, "")
        drained = time.monotonic()
        wait_until(lambda: traffic.versions_since(drained), 30, "no answers after the drain")
    assert traffic.failures == []
    assert traffic.versions_since(drained) == {"1"}
    assert event.type == "deployment.canary.rolled_back"
    payload = event.payload
    assert payload["change"] == ["canary"]
    assert payload["traffic"] == {"1": 100}
    canary, stable = payload["canary"], payload["stable"]
    assert (canary["revision"], canary["version"], stable["version"]) == (2, 2, 1)
    assert canary["quality_metric"] == stable["quality_metric"] == "accuracy"
    assert canary["labels"] >= 20
    assert stable["labels"] >= 20
    assert stable["quality"] - canary["quality"] > 0.5, payload
    assert canary["requests"] >= 20
    assert canary["errors"] == 0
    assert payload["reasons"][0].startswith(f"accuracy {canary['quality']:.3f}")
    assert payload["policy"]["min_labels"] == 20
    deployment = platform.serving.control.get(PROJECT, name)
    assert deployment.spec.model == "cancer/1"
    assert deployment.traffic == {1: 100}
    wait_until(lambda: _listed(targets, name) == ["1"], 10, "the canary is still listed")
    _delete(platform, name)


def test_a_canary_whose_model_fails_is_rolled_back_and_the_failures_stop(
    platform: Platform,
) -> None:
    name = "failing"
    _deploy(
        platform,
        name,
        {"model": "cancer/4", "min_requests": 10, "max_error_rate_increase": 0.1},
    )
    with Traffic(platform, name, labels=False) as traffic:
        event = _settled(platform, name)
        switched = _routed_to(platform, name, {1})
        wait_until(lambda: traffic.versions_since(switched), 30, "no answers after")
    assert event.type == "deployment.canary.rolled_back"
    canary = event.payload["canary"]
    assert canary["version"] == 4
    assert canary["errors"] >= 1
    assert event.payload["reasons"][0].startswith(f"error rate {canary['error_rate']:.2%}")
    # Only the canary failed, and only before it was rolled back.
    assert traffic.failures, "the canary never failed a request"
    assert {(version, status) for _, version, status in traffic.failures} == {("4", "422")}
    assert max(at for at, _, _ in traffic.failures) < switched
    assert traffic.versions_since(switched) == {"1"}
    _delete(platform, name)


def test_a_canary_no_worse_is_promoted_after_its_time(platform: Platform) -> None:
    name = "promoted"
    _deploy(
        platform,
        name,
        {
            "model": "cancer/3",
            "min_requests": 10,
            "min_labels": 10,
            # Both models miss the same rows, 6 of them among rows 31-44: which revision
            # the router sends those to is chance, so on 10 labels their accuracies can
            # differ by 0.2 or more with no model worse. Quality is judged in the test above.
            "max_quality_drop": 1.0,
            "max_error_rate_increase": 0.5,
            "promote_after_s": 4,
        },
    )
    with Traffic(platform, name) as traffic:
        event = _settled(platform, name)
        assert event.type == "deployment.canary.promoted", event.payload
        switched = _routed_to(platform, name, {2})
        wait_until(lambda: traffic.versions_since(switched), 30, "no answers after")
    assert traffic.failures == []
    payload = event.payload
    assert payload["elapsed_s"] >= 4
    assert payload["change"] == ["canary", "model"]
    assert payload["traffic"] == {"2": 100}
    assert payload["canary"]["version"] == 3
    assert payload["canary"]["requests"] >= 10
    assert payload["reasons"][0].startswith("no worse than the stable revision after")
    deployment = platform.serving.control.get(PROJECT, name)
    assert (deployment.spec.model, deployment.spec.canary) == ("cancer/3", None)
    # The canary's revision and replica were kept: it serves on, alone.
    assert deployment.traffic == {2: 100}
    assert traffic.versions_since(switched) == {"3"}
    _delete(platform, name)


def test_a_canarys_own_fields_override_the_settings_and_auto_falls_back() -> None:
    defaults = CanaryDefaults(auto=False, policy=CanaryPolicy(min_requests=100))
    plain = Canary(model="churn/2", percent=10)
    assert policy_of(plain, defaults) == (False, defaults.policy)
    tuned = Canary(model="churn/2", percent=10, auto=True, min_requests=5, promote_after_s=3)
    auto, policy = policy_of(tuned, defaults)
    assert auto is True
    assert (policy.min_requests, policy.promote_after_s) == (5, 3)
    assert policy.max_quality_drop == defaults.policy.max_quality_drop
    off = Canary(model="churn/2", percent=10, auto=False)
    assert policy_of(off, CanaryDefaults(auto=True))[0] is False
