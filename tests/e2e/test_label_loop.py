"""Issue 39's acceptance: the loop closes on labels, on a real ``loopml up``.

The demo's data (scikit-learn's breast cancer, ``loopml.cli._demo_data``): the champion is
trained by the shipped ``retrain`` loop on 150 rows. Unshifted traffic raises no drift
event. Then a client sends rows from a "new scanner" (every measurement ten times larger)
without pause, and their labels come back only later: drift is detected at once, but the
trigger on ``drift.labelled`` starts the shipped ``retrain-labels`` loop only once the labels
have landed; the retrain is gated (``min_delta`` over the champion on the same eval set),
serves a canary judged on live quality by the labels, is promoted, and the client saw no
failed request throughout. The monitor's and the canary judge's timings are shortened
through ``LOOPML_*`` settings.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loopml.cli._demo_data import CONTRACT, POLICY, TARGET, batches, features, scrambled_labels
from loopml.client import Client
from loopml.core.errors import LoopmlError
from loopml.core.gate import GatePolicy
from loopml.core.pipelines import PipelineRun, RunStatus, StepStatus
from loopml.core.types import Event
from loopml.pipelines import loops
from tests.waiting import eventually

from .conftest import RunningServer, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TABLE, MODEL, DEPLOYMENT = "patients", "cancer", "cancer-api"
FAST = {
    # The lag must exceed the prediction log's flush delay (1 s).
    "LOOPML_MONITOR_INTERVAL_S": "1",
    "LOOPML_MONITOR_LAG_S": "3",
    "LOOPML_MONITOR_DRIFT_MIN_LABELS": "100",
    "LOOPML_CANARY_INTERVAL_S": "0.5",
    "LOOPML_CANARY_MIN_REQUESTS": "10",
    # Latency on a shared two-core machine is noise: it never decides here.
    "LOOPML_CANARY_MAX_LATENCY_RATIO": "1000",
    "LOOPML_CANARY_LATENCY_SLACK_MS": "60000",
}
BUDGET_S = 4
CANARY_S = 10  # enough for MIN_LABELS labels on each revision past the monitor's lag
MIN_LABELS = 20


def wait_for(check: Callable[[], Any], timeout: float, message: str) -> Any:
    """Poll ``check`` until it is truthy; fail with ``message`` after ``timeout`` s."""
    return eventually(check, timeout, message, interval_s=0.25)


def events(client: Client, type: str) -> list[Event]:
    return [
        e
        for e in client.events.list(type=type, limit=100).items
        if e.payload.get("deployment", e.subject) == DEPLOYMENT
    ]


class Traffic:
    """A client sending ``rows`` five at a time without pause, counting failed requests;
    once ``label()`` is called, the labels of every answer so far, and of each later one,
    are sent back as feedback."""

    def __init__(self, url: str, rows: list[dict[str, Any]]) -> None:
        self.url, self.rows = url, rows
        self.sent = self.rows_answered = 0
        self.failed: list[str] = []
        self.versions: set[int] = set()
        self.labelled_at: datetime | None = None
        self._answered: list[tuple[str, list[int]]] = []
        self._labelling = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._send)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive()

    def label(self) -> None:
        self.labelled_at = datetime.now(UTC)
        self._labelling.set()

    def _send(self) -> None:
        with Client(self.url, timeout=60) as client:
            start = 0
            while not self._stop.is_set():
                chunk = self.rows[start : start + 5]
                start = (start + 5) % len(self.rows)
                self.sent += 1
                try:
                    answer = client.deployments.predict(DEPLOYMENT, [features(r) for r in chunk])
                except LoopmlError as error:
                    self.failed.append(str(error))
                    continue
                self.versions.add(int(answer["version"]))
                self.rows_answered += len(chunk)
                self._answered.append((answer["inference_id"], [int(r[TARGET]) for r in chunk]))
                if self._labelling.is_set():
                    self._feedback(client)
                self._stop.wait(0.05)  # live traffic, not a load test: it shares the machine

    def _feedback(self, client: Client) -> None:
        answered, self._answered = self._answered, []
        items = [
            {"inference_id": inference, "label": label, "row_index": i}
            for inference, labels in answered
            for i, label in enumerate(labels)
        ]
        for start in range(0, len(items), 5000):
            client.predictions.feedback_many(DEPLOYMENT, items[start : start + 5000])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("label-loop-home")
    with running_server(home, FAST) as running:
        yield running


def _tree_only(name: str) -> str:
    """A shipped loop whose AutoML searches tree learners only. The shift multiplies every
    feature by 10, which leaves a linear model's ranking (its roc_auc) as it was: a linear
    champion would make the gate's verdicts below depend on which learner won."""
    text = loops.text(name)
    train = "    uses: train_automl\n"
    budget = "      budget_s: ${{ inputs.budget_s }}\n"
    at = text.index(budget, text.index(train)) + len(budget)
    return text[:at] + "      estimators: [lgbm, rf, extra_tree]\n" + text[at:]


def _wait_run(client: Client, run: PipelineRun, timeout_s: float) -> PipelineRun:
    done = client.pipelines.wait(run.id, timeout_s=timeout_s, poll_s=0.5)
    assert done.status == RunStatus.SUCCEEDED, done.error
    return done


def _steps(client: Client, run: PipelineRun) -> dict[str, Any]:
    return {s.name: s for s in client.pipelines.get_run(run.id).steps or []}


def _champion(client: Client, first: list[dict[str, Any]]) -> None:
    """The shipped ``retrain`` loop, run once on the first rows: ``cancer/1`` serves."""
    client.tables.append_records("default", TABLE, first)
    client.tables.set_contract("default", TABLE, CONTRACT)
    client.pipelines.apply(_tree_only("retrain"))
    inputs = {
        "table": TABLE,
        "target": TARGET,
        "model": MODEL,
        "deployment": DEPLOYMENT,
        "budget_s": BUDGET_S,
        "strategy": "direct",
    }
    _wait_run(client, client.pipelines.run("retrain", inputs=inputs), 240)
    assert client.models.resolve(f"{MODEL}@champion").version == 1


def _judged(client: Client, rows: int, version: int | None = None) -> bool:
    """Whether the monitor counted ``rows`` rows of the served model (of ``version``, if
    given) and judged drift on a window of them (the hour may turn between two windows)."""
    windows = [
        w
        for w in client.monitoring.windows(DEPLOYMENT, window="1h")
        if w["model"] and version in (None, w["version"])
    ]
    counted = sum(int(w["summary"]["usage"]["rows"]) for w in windows)
    drifts = [w["summary"].get("drift", {}) for w in windows]
    return counted >= rows and any(d.get("status") == "ready" and d.get("judged") for d in drifts)


def test_the_loop_closes_on_labels(server: RunningServer) -> None:
    started = time.monotonic()
    data = batches("promote")  # its later rows come from the new scanner (ten times larger)
    with Client(server.url, timeout=60) as client:
        _champion(client, data.first)
        trained = time.monotonic() - started

        # (a) Unshifted traffic, labelled as it is answered (as real traffic is before it
        # shifts, in the same hour): judged by the monitor, and no drift event.
        with Traffic(server.url, data.live) as unshifted:
            unshifted.label()
            wait_for(lambda: unshifted.sent >= len(data.live) // 5, 60, "too few requests sent")
        assert unshifted.failed == []
        assert unshifted.rows_answered >= 100  # drift_min_labels: enough to fire on them
        answered = unshifted.rows_answered
        wait_for(lambda: _judged(client, answered), 60, "the monitor judged no window")
        assert events(client, "drift.*") == []

        # (b) Shifted traffic, its labels late: drift.labelled starts retrain-labels.
        client.pipelines.apply(_tree_only("retrain-labels"))
        client.triggers.create(
            "retrain-on-drift",
            pipeline="retrain-labels",
            on="drift.labelled",
            where={"deployment": DEPLOYMENT},
            inputs={
                "deployment": DEPLOYMENT,
                "model": MODEL,
                "target": TARGET,  # the champion's label column: the gate scores it too
                "budget_s": BUDGET_S,
                "canary_percent": 50,
                "canary_s": CANARY_S,
                "min_labels": MIN_LABELS,
                "max_quality_drop": 0.05,
            },
        )
        shift_at = datetime.now(UTC)
        with Traffic(server.url, data.new) as shifted:
            (detected,) = wait_for(
                lambda: events(client, "drift.detected"), 90, "no drift was detected"
            )
            assert detected.payload["version"] == 1
            assert detected.payload["drifted"], detected.payload
            # Drift is seen, the shifted answers' labels are not in: no retrain yet, though
            # the window holds the labels of the unshifted answers before the shift (on the
            # window's count, drift.labelled fired on them with drift.detected).
            assert events(client, "drift.labelled") == []
            # The onset is found in the rows, not the window's start (seen on a few dozen
            # shifted rows, it may land a request or two early; it is found again below).
            assert detected.payload["onset"] > detected.payload["window_start"]
            assert client.pipelines.runs(pipeline="retrain-labels").items == []
            shifted.label()
            run = wait_for(
                lambda: client.pipelines.runs(pipeline="retrain-labels").items,
                90,
                "drift.labelled started no retrain",
            )[0]
            done = _wait_run(client, run, 300)
            wait_for(lambda: shifted.versions >= {1, 2}, 30, "version 2 never answered")
            # Its reference is the shifted rows it was trained on (since the onset), so the
            # shifted traffic it now serves is no drift of its own: no second episode, no
            # second retrain for the same shift.
            wait_for(lambda: _judged(client, 100, version=2), 60, "version 2 was never judged")
        assert [e.payload for e in events(client, "drift.detected")] == [detected.payload]
        (labelled,) = events(client, "drift.labelled")
        assert shifted.labelled_at is not None
        assert labelled.time > shifted.labelled_at
        assert labelled.payload["labels"] >= 100
        # Found again once the labels are in, on many shifted rows: the first shifted answer.
        assert datetime.fromisoformat(labelled.payload["since"]) >= shift_at, labelled.payload
        assert run.actor == "trigger:retrain-on-drift"
        assert run.created_at >= labelled.time

        steps = _steps(client, done)
        # It learned from the shifted answers alone, not the unshifted ones labelled before.
        learned = steps["labelled"].outputs
        assert learned["since"] == labelled.payload["since"]
        assert learned["rows"] - learned["training_rows"] >= unshifted.rows_answered, learned
        gate = steps["gate"].outputs
        assert gate["passed"] is True, gate
        assert done.outputs["model"] == f"{MODEL}/2"
        canary = steps["deploy"].outputs["canary"]
        assert canary["labels"] >= MIN_LABELS, canary
        (promoted,) = events(client, "deployment.canary.promoted")
        assert promoted.payload["canary"]["version"] == 2
        assert promoted.payload["policy"]["min_labels"] == MIN_LABELS
        assert promoted.payload["stable"]["labels"] >= MIN_LABELS, promoted.payload
        # Compared on live quality: the new version is more accurate on the shifted rows.
        assert promoted.payload["canary"]["quality"] > promoted.payload["stable"]["quality"]
        assert not any("not compared" in r for r in promoted.payload["reasons"])
        assert client.models.resolve(f"{MODEL}@champion").version == 2
        deployment = client.deployments.get(DEPLOYMENT)
        served = {r.number: r.version for r in deployment.revisions}
        assert [served[n] for n, pct in deployment.traffic.items() if pct] == [2]
        assert shifted.failed == [], shifted.failed[:3]
        assert shifted.sent > 50
        looped = time.monotonic() - started
        # The retrains below are started by hand: a canary's own drift must not start another.
        client.triggers.delete("retrain-on-drift")
        assert len(client.pipelines.runs(pipeline="retrain-labels").items) == 1

        _rolled_back_on_live_labels(server, client, data.live, data.new)
        _refused_on_scrambled_labels(client, data.new)
    print(
        f"\nchampion trained after {trained:.0f} s; the drift loop closed after {looped:.0f} s; "
        f"all done after {time.monotonic() - started:.0f} s"
    )


def _rolled_back_on_live_labels(
    server: RunningServer, client: Client, old: list[dict[str, Any]], shifted: list[dict[str, Any]]
) -> None:
    """(d) ``retrain`` on old-scanner rows only: on its own eval set it beats the champion
    (trained on the new scanner's rows), on the live new-scanner traffic it is wrong, and the
    pipeline's canary rolls it back on the labels; the champion keeps serving."""
    client.tables.append_records("default", TABLE, old)
    inputs = {
        "table": TABLE,
        "target": TARGET,
        "model": MODEL,
        "deployment": DEPLOYMENT,
        "budget_s": BUDGET_S,
        "canary_percent": 50,
        "canary_s": 300,  # only a verdict on the labels ends the canary before this
        "min_labels": MIN_LABELS,
        "max_quality_drop": 0.05,
    }
    with Traffic(server.url, shifted) as live:
        live.label()
        run = client.pipelines.run("retrain", inputs=inputs)
        done = client.pipelines.wait(run.id, timeout_s=300, poll_s=0.5)
    assert done.status == RunStatus.FAILED, done.status
    steps = _steps(client, done)
    assert steps["gate"].outputs["passed"] is True  # better than the champion on its eval set
    assert steps["register"].outputs["model"] == f"{MODEL}/3"
    error = steps["deploy"].error
    assert error is not None
    assert error.code == "canary_failed", error
    assert f"the canary of {MODEL}/3 on '{DEPLOYMENT}' was rolled back: accuracy " in error.message
    (rolled_back,) = events(client, "deployment.canary.rolled_back")
    canary, stable = rolled_back.payload["canary"], rolled_back.payload["stable"]
    assert canary["version"] == 3
    assert min(canary["labels"], stable["labels"]) >= MIN_LABELS
    assert stable["quality"] - canary["quality"] > 0.05, rolled_back.payload
    assert rolled_back.payload["reasons"][0] in error.message
    assert client.models.resolve(f"{MODEL}@champion").version == 2
    deployment = client.deployments.get(DEPLOYMENT)
    served = {r.number: r.version for r in deployment.revisions}
    assert [served[n] for n, pct in deployment.traffic.items() if pct] == [2]
    assert deployment.spec.canary is None
    assert live.failed == [], live.failed[:3]


def _refused_on_scrambled_labels(client: Client, shifted: list[dict[str, Any]]) -> None:
    """(c) ``retrain`` after new-scanner rows arrived with their labels scrambled (a broken
    export): the model's gate policy (the demo's: roc_auc >= 0.90 and beat the champion)
    refuses the version, the deploy is skipped and the champion keeps serving."""
    client.models.set_gate_policy(MODEL, GatePolicy.model_validate(POLICY))
    client.tables.append_records("default", TABLE, scrambled_labels(shifted))
    inputs = {
        "table": TABLE,
        "target": TARGET,
        "model": MODEL,
        "deployment": DEPLOYMENT,
        "budget_s": BUDGET_S,
    }
    done = _wait_run(client, client.pipelines.run("retrain", inputs=inputs), 300)
    steps = _steps(client, done)
    assert steps["register"].outputs["model"] == f"{MODEL}/4"
    assert steps["gate"].outputs["passed"] is False
    assert steps["deploy"].status == StepStatus.SKIPPED
    refused = [e for e in client.events.list(type="gate.failed").items if e.subject == MODEL]
    assert [e.payload["version"] for e in refused] == [4]
    assert client.models.resolve(f"{MODEL}@champion").version == 2
