"""The local target and the gateway with real model-server processes: the canary split, the
shadow, a rolling swap on an alias move under load, scale-to-zero and the activator, a
SIGKILLed replica, V2 paths, and a platform restart.

One platform (and one logged model, registered as versions 1 to 3) serves the module; each
test deletes its deployments and checks that no replica process is left.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from loopml.core.deployments import DeploymentStatus
from loopml.predictions.intake import Answer
from loopml.registry import set_alias
from tests.unit.deploy.deploy_support import (
    Platform,
    fit,
    home_settings,
    register_model,
    replica_processes,
    wait_until,
)
from tests.waiting import REQUEST_GUARD_S

pytestmark = pytest.mark.timeout(300)
PROJECT = "default"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = home_settings(tmp_path_factory.mktemp("deploy-home"))
    running = Platform(settings)
    running.start()
    try:
        register_model(settings, running.store, running.artifacts, fit(1.0), versions=3)
        yield running
    finally:
        running.stop()
    assert replica_processes() == [], "replicas outlived the platform"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60, trust_env=False) as http:
        yield http


def _ready(platform: Platform, name: str, timeout: float = 60) -> None:
    def ready() -> bool:
        deployment = platform.serving.control.get(PROJECT, name)
        assert deployment.status != DeploymentStatus.FAILED, deployment.status_message
        return deployment.status == DeploymentStatus.READY

    wait_until(ready, timeout, f"deployment {name} did not become ready")


def _delete(platform: Platform, name: str) -> None:
    platform.serving.control.delete(PROJECT, name, actor="t")
    assert replica_processes(name) == []
    assert not (platform.settings.home / "deployments" / PROJECT / name).exists()


@dataclass
class Load:
    """Clients posting predictions in a loop until stopped; every answer is kept."""

    platform: Platform
    name: str
    threads: int = 3
    answers: list[tuple[int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=60, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    answer = self.platform.predict(http, self.name)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:300]}")
                else:
                    self.answers.append(
                        (time.monotonic(), answer.headers["x-loopml-model-version"])
                    )

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)

    def versions_since(self, moment: float) -> set[str]:
        return {version for at, version in list(self.answers) if at >= moment}


# ---------------------------------------------------------------- canary and shadow


@pytest.fixture(scope="module")
def split(platform: Platform) -> Iterator[None]:
    """``split``: version 1, with a 20 % canary on version 2."""
    spec = {"model": "cancer/1", "canary": {"model": "cancer/2", "percent": 20}}
    created = platform.serving.control.create(PROJECT, "split", spec, actor="t")
    assert created.traffic == {1: 80, 2: 20}
    _ready(platform, "split")
    yield
    _delete(platform, "split")


@pytest.fixture
def mirror(platform: Platform) -> Iterator[list[Answer]]:
    """``mirror``: version 1, with a shadow on version 3; yields the shadow answers the answer
    hook receives (each answer still goes on to the hook it had)."""
    seen: list[Answer] = []
    gateway = platform.serving.gateway
    logged = gateway.on_answer

    def hook(answer: Answer) -> None:
        if answer.role == "shadow":
            seen.append(answer)
        if logged is not None:
            logged(answer)

    gateway.on_answer = hook
    spec = {"model": "cancer/1", "shadow": "cancer/3"}
    created = platform.serving.control.create(PROJECT, "mirror", spec, actor="t")
    assert (created.traffic, created.shadow_revision) == ({1: 100}, 2)
    _ready(platform, "mirror")
    # The shadow joins once it is ready too; before, copies are counted "unreachable".
    wait_until(
        lambda: (
            (routes := platform.serving.local.routes(PROJECT, "mirror")) is not None
            and routes.shadow is not None
            and routes.shadow.backends
        ),
        60,
        "the shadow did not start",
    )
    yield seen
    gateway.on_answer = logged
    _delete(platform, "mirror")


def test_canary_split_is_within_tolerance_over_1000_requests(
    platform: Platform, split: None
) -> None:
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def send(requests: int) -> None:
        with httpx.Client(timeout=60, trust_env=False) as http:
            for _ in range(requests):
                answer = platform.predict(http, "split")
                assert answer.status_code == 200, answer.text
                with lock:
                    counts[answer.headers["x-loopml-model-version"]] += 1

    workers = [threading.Thread(target=send, args=(250,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert sum(counts.values()) == 1000
    assert set(counts) == {"1", "2"}
    n, p = 1000, 0.20
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(counts["2"] - n * p) <= 4 * sigma, counts
    metrics = httpx.get(f"{platform.url}/metrics", trust_env=False, timeout=REQUEST_GUARD_S).text
    line = next(
        m
        for m in metrics.splitlines()
        if m.startswith("loopml_gateway_requests_total{")
        and 'deployment="split"' in m
        and 'version="2"' in m
    )
    assert float(line.rsplit(" ", 1)[1]) >= counts["2"]


def _weights(platform: Platform, name: str) -> dict[int, int]:
    routes = platform.serving.local.routes(PROJECT, name)
    return {r.version: r.weight for r in routes.revisions} if routes is not None else {}


def test_a_canary_moved_from_10_to_50_percent_takes_effect_within_a_second_under_load(
    platform: Platform,
) -> None:
    spec = {"model": "cancer/1", "canary": {"model": "cancer/2", "percent": 10}}
    platform.serving.control.create(PROJECT, "moving", spec, actor="t")
    try:
        _ready(platform, "moving")
        with Load(platform, "moving") as load:
            wait_until(lambda: len(load.answers) >= 50, 60, "no answers under load")
            changed = platform.serving.control.update(
                PROJECT, "moving", {"canary": {"model": "cancer/2", "percent": 50}}, actor="t"
            )
            moved = time.monotonic()
            assert changed.traffic == {1: 50, 2: 50}
            wait_until(
                lambda: _weights(platform, "moving") == {1: 50, 2: 50},
                1.0,
                "the gateway's routes did not move within a second",
            )
            settled = moved + 1.0
            wait_until(
                lambda: sum(at >= settled for at, _ in list(load.answers)) >= 300,
                120,
                "too few answers after the change",
            )
        assert load.failures == []
        before = [v for at, v in load.answers if at < moved]
        after = [v for at, v in load.answers if at >= settled]
        # 10 % before (4 sigma of 50 answers and more), 50 % from a second after the change.
        assert before.count("2") / len(before) < 0.3, Counter(before)
        n = len(after)
        sigma = math.sqrt(n * 0.25)
        assert abs(after.count("2") - n / 2) <= 4 * sigma, Counter(after)
    finally:
        _delete(platform, "moving")


def test_shadow_answers_are_logged_and_never_returned(
    platform: Platform, mirror: list[Answer], client: httpx.Client
) -> None:
    split = mirror
    split.clear()
    ids = []
    for i in range(30):
        answer = platform.predict(client, "mirror", **{"X-Request-Id": f"shadow-test-{i}"})
        assert answer.status_code == 200
        assert answer.headers["x-loopml-model-version"] == "1"
        assert answer.json()["version"] == 1
        assert answer.headers["x-inference-id"] == f"shadow-test-{i}"
        ids.append(answer.headers["x-inference-id"])
    wait_until(lambda: len(split) >= 30, 30, "the shadow hook did not get every copy")
    assert sorted(a.inference_id for a in split) == sorted(ids)
    assert {(a.revision, a.version, a.status) for a in split} == {(2, 3, 200)}
    assert all(b'"version":3' in a.body for a in split)
    metrics = httpx.get(f"{platform.url}/metrics", trust_env=False, timeout=REQUEST_GUARD_S).text
    shadowed = (
        'loopml_gateway_shadow_requests_total{deployment="mirror",model="cancer",'
        'outcome="ok",project="default",version="3"}'
    )
    count = next(m for m in metrics.splitlines() if m.startswith(shadowed))
    assert float(count.rsplit(" ", 1)[1]) >= 30


def test_v2_paths_route_to_the_deployment(
    platform: Platform, split: None, client: httpx.Client
) -> None:
    url = platform.url
    body = {
        "inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP64", "data": [15.0] * 8}]
    }
    answer = client.post(f"{url}/v2/models/split/infer", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_name"] == "cancer"
    for _ in range(10):
        pinned = client.post(f"{url}/v2/models/split/versions/2/infer", json=body)
        assert pinned.status_code == 200
        assert pinned.headers["x-loopml-model-version"] == "2"
        assert pinned.json()["model_version"] == "2"
    named = client.post(f"{url}/deployments/split/v2/models/cancer/infer", json=body)
    assert named.status_code == 200
    other = client.post(f"{url}/projects/default/deployments/split/predict", json={"instances": []})
    assert other.status_code in (200, 422)
    assert client.get(f"{url}/v2/models/split").json()["name"] == "cancer"
    assert client.get(f"{url}/v2/models/split/ready").json() == {"name": "split", "ready": True}
    assert client.get(f"{url}/deployments/split/v2/health/ready").status_code == 200
    assert client.get(f"{url}/v2/models/split/versions/9/infer").status_code == 405
    assert client.post(f"{url}/v2/models/split/versions/9/infer", json=body).status_code == 404
    assert client.post(f"{url}/v2/models/nope/infer", json=body).status_code == 404
    assert (
        client.post(f"{url}/deployments/split/v2/models/other/infer", json=body).status_code == 404
    )
    # The platform's guard applies: JSON bodies only, bounded. (Without Authorization, a
    # form type is refused even earlier, as cross-site: test_csrf.py.)
    refused = client.post(
        f"{url}/v2/models/split/infer",
        content=b"x",
        headers={"content-type": "text/plain", "authorization": "Bearer lm_x"},
    )
    assert refused.status_code == 415
    # ... and answers with the Open Inference Protocol's error body on a V2 path.
    assert refused.json()["code"] == "unsupported_media_type"
    assert "application/json" in refused.json()["error"]
    bad = client.post(f"{url}/v2/models/split/infer", json={"inputs": []})
    assert bad.status_code == 422
    assert bad.headers["x-loopml-revision"] in {"1", "2"}


# ---------------------------------------------------------------- rolling swap


def test_alias_move_rolls_out_under_load_with_zero_failed_requests(platform: Platform) -> None:
    store, control = platform.store, platform.serving.control
    set_alias(store, PROJECT, "cancer", "champion", 1, actor="t", force=True, reason="test")
    control.create(PROJECT, "swap", {"model": "cancer@champion"}, actor="t")
    _ready(platform, "swap")
    [old] = replica_processes("swap")
    with Load(platform, "swap") as load:
        wait_until(lambda: len(load.answers) >= 30, 30, "no load")
        moved = time.monotonic()
        set_alias(store, PROJECT, "cancer", "champion", 2, actor="t", force=True, reason="test")
        wait_until(lambda: "2" in load.versions_since(moved), 60, "version 2 never answered")
        wait_until(lambda: not old.is_running(), 60, "the old replica was not stopped")
        switched = time.monotonic()
        wait_until(lambda: len(load.versions_since(switched)) > 0, 10, "no answer after swap")
        time.sleep(0.5)
    assert load.failures == []
    assert load.versions_since(0) == {"1", "2"}
    assert load.versions_since(switched) == {"2"}
    deployment = control.get(PROJECT, "swap")
    assert deployment.traffic == {2: 100}
    assert [(r.number, r.version, r.ref) for r in control.revisions(PROJECT, "swap")] == [
        (1, 1, "cancer@champion"),
        (2, 2, "cancer@champion"),
    ]
    log = "\n".join(control.logs(PROJECT, "swap", 50))
    # Start the new, wait for it, switch, then drain the old: in that order.
    ready = log.index("revision 2 replica 0: ready")
    switched_at = log.index("traffic {revision 1: 100%} -> {revision 2: 100%}")
    drained = log.index("revision 1 replica 0: drained, stopping")
    assert ready < switched_at < drained


def test_a_version_that_does_not_start_leaves_the_old_one_serving(
    platform: Platform, client: httpx.Client
) -> None:
    control = platform.serving.control
    # A deployment of its own: the module's tests share one platform and may run in any
    # order (pytest-randomly); this one used the alias test's "swap" and failed without it.
    control.create(PROJECT, "broken", {"model": "cancer/2"}, actor="t")
    _ready(platform, "broken")
    control.update(PROJECT, "broken", {"model": "cancer/3"}, actor="t")
    # Revision 2's fetched package is corrupted: the server refuses it and exits 2.
    model = platform.settings.home / "deployments" / PROJECT / "broken" / "2" / "package"
    onnx = next(model.glob("*.onnx"))
    onnx.write_bytes(b"corrupted" + onnx.read_bytes())

    def failed() -> bool:
        return control.get(PROJECT, "broken").status == DeploymentStatus.FAILED

    wait_until(failed, 60, "the broken revision was not reported")
    for _ in range(10):
        answer = platform.predict(client, "broken")
        assert answer.status_code == 200
        assert answer.headers["x-loopml-model-version"] == "2"
    message = control.get(PROJECT, "broken").status_message
    assert "revision 2 (cancer/3) does not start" in message
    assert "keep serving" in message
    rolled = control.rollback(PROJECT, "broken", 1, actor="t")
    assert rolled.spec.model == "cancer/2"
    _ready(platform, "broken")
    wait_until(lambda: len(replica_processes("broken")) == 1, 30, "revision 2 kept restarting")
    _delete(platform, "broken")


# ---------------------------------------------------------------- scale to zero


def test_scale_to_zero_then_the_first_request_succeeds(
    platform: Platform, client: httpx.Client
) -> None:
    control = platform.serving.control
    spec = {"model": "cancer/1", "min_replicas": 0, "scale_to_zero_after_s": 10}
    control.create(PROJECT, "idle", spec, actor="t")
    status = lambda: control.get(PROJECT, "idle").status  # noqa: E731
    wait_until(lambda: status() == DeploymentStatus.SCALED_TO_ZERO, 10, "not asleep")
    # Probes never wake it.
    probe = client.get(f"{platform.url}/deployments/idle/v2/health/ready")
    assert probe.status_code == 503
    assert replica_processes("idle") == []

    first = platform.predict(client, "idle")
    assert first.status_code == 200, first.text
    assert status() == DeploymentStatus.READY
    assert len(replica_processes("idle")) == 1
    wait_until(lambda: replica_processes("idle") == [], 30, "it did not scale to zero")
    wait_until(lambda: status() == DeploymentStatus.SCALED_TO_ZERO, 5, "status not updated")
    again = platform.predict(client, "idle")
    assert again.status_code == 200
    metrics = client.get(f"{platform.url}/metrics").text
    assert 'loopml_gateway_activations_total{deployment="idle",project="default"} 2.0' in metrics
    _delete(platform, "idle")


# ---------------------------------------------------------------- autoscaling


def test_requests_in_flight_over_the_target_add_a_replica_within_max(
    platform: Platform, client: httpx.Client
) -> None:
    control = platform.serving.control
    control.create(PROJECT, "busy", {"model": "cancer/1", "max_replicas": 2}, actor="t")
    _ready(platform, "busy")
    routes = platform.serving.local.routes(PROJECT, "busy")
    assert routes is not None
    (first,) = routes.revisions[0].backends
    # What the gateway counts while 20 requests wait on the replica (the default target is
    # 8 per replica): sustained, it asks for ceil(20 / 8) = 3, bounded by max_replicas 2.
    first.inflight += 20
    try:
        wait_until(
            lambda: (
                len(replica_processes("busy")) == 2
                and len(platform.serving.local.routes(PROJECT, "busy").revisions[0].backends) == 2
            ),  # type: ignore[union-attr]
            60,
            "no second replica started",
        )
        time.sleep(1.0)
        assert len(replica_processes("busy")) == 2  # never past max_replicas
    finally:
        first.inflight -= 20
    for _ in range(4):  # both replicas answer, in turn
        assert platform.predict(client, "busy").status_code == 200
    log = (platform.settings.home / "deployments" / PROJECT / "busy" / "replicas.log").read_text()
    assert "autoscale: 1 -> 2 replicas" in log
    _delete(platform, "busy")


# ---------------------------------------------------------------- crash


def test_a_sigkilled_replica_is_restarted_and_routed_around(platform: Platform) -> None:
    control = platform.serving.control
    control.create(
        PROJECT, "crash", {"model": "cancer/1", "min_replicas": 2, "max_replicas": 2}, actor="t"
    )
    _ready(platform, "crash")
    first, second = replica_processes("crash")
    with Load(platform, "crash") as load:
        wait_until(lambda: len(load.answers) >= 30, 30, "no load")
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(
            lambda: (
                len(pids := {p.pid for p in replica_processes("crash")}) == 2
                and first.pid not in pids
            ),
            30,
            "the replica was not restarted",
        )
        wait_until(lambda: control.get(PROJECT, "crash").replicas_ready == 2, 30, "not back to 2")
        wait_until(lambda: len(load.versions_since(killed)) > 0, 10, "no answers after the kill")
        time.sleep(0.5)
    assert load.failures == []
    assert second.is_running()
    log = "\n".join(control.logs(PROJECT, "crash", 50))
    assert f"pid {first.pid} exited with status -9" in log
    _delete(platform, "crash")


# ---------------------------------------------------------------- restart


def test_a_platform_restart_starts_deployments_again(
    platform: Platform, client: httpx.Client
) -> None:
    control = platform.serving.control
    control.create(PROJECT, "keep", {"model": "cancer/1"}, actor="t")
    _ready(platform, "keep")
    platform.restart()
    assert platform.serving.control is not control
    answer = platform.predict(client, "keep")  # waits for the replica started again
    assert answer.status_code == 200
    _ready(platform, "keep")
    assert len(replica_processes("keep")) == 1
    _delete(platform, "keep")
