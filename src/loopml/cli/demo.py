"""``loopml demo``: the whole loop on a data set that ships with scikit-learn, narrated.

It runs as a client against a running server (``loopml up``, or ``loopml up --demo`` which
starts it in the background once the server answers): a ``demo`` project, a first small
batch of the breast-cancer data ingested into a lake table, the shipped ``retrain`` loop run
to a deployed champion, live traffic and feedback through the gateway, then a new batch that
the trigger on new rows turns into a retrain, judged by the gate against the champion on the
same eval set. What the new batch holds is the scenario (``_demo_data``): ``promote`` (a unit
change the champion cannot handle: the challenger wins, serves a canary, then takes over
without a failed request) or ``refuse`` (scrambled labels: the gate refuses, the champion
keeps serving). The outcome is built into the data, not left to chance. Then the champion
gets its own traffic (the new scanner's, in ``promote``) with its labels, and the demo says
what the monitor shows for it, read from the monitor's own answer (``now`` of the monitoring
view, the figures ``loopml monitor`` and the portal show) once it has read that traffic.

Running it again replaces what an earlier demo left (deployment, model, table).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli import _demo_say as out
from loopml.cli._demo_data import (
    CONTRACT,
    DEPLOYMENT,
    MODEL,
    POLICY,
    POLICY_FLOOR,
    POLICY_MARGIN,
    PROJECT,
    SCENARIOS,
    TABLE,
    TARGET,
    TRIGGER,
    batches,
    features,
)
from loopml.cli._output import console

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.core.pipelines import PipelineRun


def _reset(client: Client) -> None:
    """Remove what an earlier demo left, so a second demo starts the same way."""
    from loopml.core.deployments import feedback_table, prediction_table
    from loopml.core.errors import AlreadyExistsError, NotFoundError

    with contextlib.suppress(AlreadyExistsError):
        client.projects.create(PROJECT, "loopml demo: the loop on scikit-learn's breast cancer")
    cleanups: tuple[Callable[[], None], ...] = (
        lambda: client.triggers.delete(TRIGGER, project=PROJECT),
        lambda: client.deployments.delete(DEPLOYMENT, project=PROJECT),
        lambda: client.models.delete(MODEL, force=True, project=PROJECT),
        lambda: client.tables.delete(PROJECT, TABLE),
        # The deployment's prediction log and feedback outlive it: an earlier demo's would
        # add to this one's.
        lambda: client.tables.delete(PROJECT, prediction_table(DEPLOYMENT)),
        lambda: client.tables.delete(PROJECT, feedback_table(DEPLOYMENT)),
    )
    for cleanup in cleanups:
        with contextlib.suppress(NotFoundError):
            cleanup()


def _loop_inputs(budget_s: float, canary_s: float) -> dict[str, Any]:
    return {
        "table": TABLE,
        "target": TARGET,
        "task": "classification",
        "model": MODEL,
        "deployment": DEPLOYMENT,
        "budget_s": budget_s,
        "strategy": "canary",
        "canary_percent": 20,
        "canary_s": canary_s,
    }


def _wait(client: Client, run: PipelineRun, timeout_s: float) -> PipelineRun:
    from loopml.core.pipelines import RunStatus

    done = client.pipelines.wait(run.id, timeout_s=timeout_s, poll_s=0.5, project=PROJECT)
    out.steps(done)
    if done.status != RunStatus.SUCCEEDED:
        raise typer.Exit(_fail(f"the loop's run {run.id} {done.status.value}: {done.error}"))
    return done


def _fail(message: str) -> int:
    console.print(f"[red]demo failed:[/] {message}", highlight=False)
    return 1


def _traffic(
    client: Client, rows: list[dict[str, Any]], *, feedback: bool, stop: threading.Event | None
) -> tuple[int, int]:
    """Send ``rows`` to the deployment five at a time (and their labels back as feedback),
    round after round while ``stop`` is given and not set. Requests sent and failed."""
    from loopml.core.errors import LoopmlError

    sent = failed = 0
    while True:
        for start in range(0, len(rows), 5):
            chunk = rows[start : start + 5]
            try:
                answer = client.deployments.predict(
                    DEPLOYMENT, [features(r) for r in chunk], project=PROJECT
                )
            except LoopmlError:
                failed += 1
                continue
            finally:
                sent += 1
            if feedback:
                items = [
                    {
                        "inference_id": answer["inference_id"],
                        "label": int(r[TARGET]),
                        "row_index": i,
                    }
                    for i, r in enumerate(chunk)
                ]
                client.predictions.feedback_many(DEPLOYMENT, items, project=PROJECT)
            if stop is not None:
                if stop.is_set():
                    return sent, failed
                time.sleep(0.05)  # live traffic, not a load test: it shares the machine
        if stop is None:
            return sent, failed


def _started_by_trigger(client: Client, before: set[str]) -> PipelineRun:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for run in client.pipelines.runs(project=PROJECT, pipeline="retrain").items:
            if run.id not in before:
                return run
        time.sleep(0.25)
    raise typer.Exit(_fail(f"trigger {TRIGGER!r} started no run within 60 s of the append"))


def _version_of(run: PipelineRun) -> int:
    model = str((run.outputs or {}).get("model", ""))
    return int(model.rpartition("/")[2])


def _setup(client: Client, first: list[dict[str, Any]]) -> None:
    from loopml.pipelines import loops

    commit = client.tables.append_records(PROJECT, TABLE, first)
    out.say(
        "ingest",
        f"breast cancer (scikit-learn): the first {len(first)} rows -> "
        f"{PROJECT}/{TABLE}@{commit.version}",
    )
    client.tables.set_contract(PROJECT, TABLE, CONTRACT)
    out.say("contract", f"{TABLE}: {TARGET} in (0, 1), sizes >= 0, at least 100 rows")
    version = client.pipelines.apply(loops.text("retrain"), project=PROJECT).version
    out.say("pipeline", f"{version.pipeline} v{version.version}: {' -> '.join(version.steps)}")


def _champion(client: Client, inputs: dict[str, Any], rows: int, budget_s: float) -> None:
    run = client.pipelines.run("retrain", inputs=inputs, project=PROJECT)
    out.say("run", f"{run.id}: AutoML for {budget_s:g} s on those {rows} rows, gate, deploy ...")
    done = _wait(client, run, timeout_s=budget_s * 4 + 180)
    out.first_verdict(out.verdict(client, _version_of(done)))
    out.say("champion", f"{done.outputs and done.outputs.get('model')} serves {DEPLOYMENT}")
    client.models.set_gate_policy(MODEL, _policy(), project=PROJECT)
    out.say(
        "policy",
        f"{MODEL}: roc_auc >= {POLICY_FLOOR:.2f}, and beat the champion by >= "
        f"{POLICY_MARGIN:g} on the challenger's eval set",
    )
    client.triggers.create(
        TRIGGER,
        pipeline="retrain",
        on="table.appended",
        where={"table": TABLE},
        min_rows=100,
        inputs=inputs,
        concurrency="skip",
        project=PROJECT,
    )
    out.say("trigger", f"{TRIGGER}: run retrain when {TABLE} gains 100 rows")


def _policy() -> Any:
    from loopml.core.gate import GatePolicy

    return GatePolicy.model_validate(POLICY)


def _retrain(
    client: Client, inputs: dict[str, Any], new: list[dict[str, Any]], story: str, timeout_s: float
) -> PipelineRun:
    before = {r.id for r in client.pipelines.runs(project=PROJECT, pipeline="retrain").items}
    commit = client.tables.append_records(PROJECT, TABLE, new)
    out.say("new rows", f"{len(new)} rows {story} -> {TABLE}@{commit.version}")
    run = _started_by_trigger(client, before)
    out.say("run", f"{run.id}, started by the trigger: retrain on every row, gate, deploy ...")
    return _wait(client, run, timeout_s=timeout_s)


def run_demo(
    url: str,
    budget_s: float = 20.0,
    canary_s: float = 5.0,
    scenario: str = "promote",
    *,
    token: str | None = None,
) -> None:
    """The demo against the server at ``url`` (see the module docstring), as the user of
    ``token`` when authentication is on (an editor of the ``demo`` project, or a platform
    admin the first time, which creates the project)."""
    from loopml.client import Client

    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"--scenario {scenario!r}: expected one of {SCENARIOS}")
    started = time.monotonic()
    data = batches(scenario)
    inputs = _loop_inputs(budget_s, canary_s)
    with Client(url, timeout=60, token=token) as client:
        client.health()
        out.say("server", f"{url}  (API reference {url}/docs, OpenAPI {url}/api/v1/openapi.json)")
        _reset(client)
        _setup(client, data.first)
        _champion(client, inputs, len(data.first), budget_s)
        # What an earlier demo left in the deployment's windows is not this run's.
        marks = out.label_marks(client)
        sent, failed = _traffic(client, data.live, feedback=True, stop=None)
        out.say(
            "traffic",
            f"{sent} requests ({len(data.live)} rows) through the gateway, {failed} failed; "
            "true labels sent back as feedback",
        )
        stop = threading.Event()
        counts: list[tuple[int, int]] = []
        # From here the traffic is what the clinic sends now: in ``promote``, the new
        # scanner's measurements (the champion's drift shows on the monitor).
        sender = threading.Thread(
            target=lambda: counts.append(_traffic(client, data.after, feedback=False, stop=stop)),
            daemon=True,
        )
        sender.start()
        try:
            done = _retrain(client, inputs, data.new, data.story, budget_s * 4 + 180)
        finally:
            stop.set()
            sender.join(30)
        result = out.verdict(client, _version_of(done))
        out.comparison(client, result)
        champion = client.models.resolve(f"{MODEL}@champion", project=PROJECT).version
        during, lost = counts[0] if counts else (0, 0)
        if result.passed:
            deployed = next((s for s in done.steps or [] if s.name == "deploy"), None)
            judged = (deployed.outputs or {}).get("canary") or {} if deployed else {}
            out.say(
                "swap",
                f"{MODEL}/{champion} served a {inputs['canary_percent']} % canary until the "
                f"canary judge found it no worse than the champion ("
                f"{int(judged.get('requests', 0))} requests, at least {canary_s:g} s), then "
                f"became the champion and took over {DEPLOYMENT}; {during} requests during "
                f"the retrain and the swap, {lost} failed",
            )
        else:
            out.say(
                "champion",
                f"{MODEL}/{champion} keeps serving {DEPLOYMENT} (deploy skipped); "
                f"{during} requests during the retrain, {lost} failed",
            )
        # The champion's own traffic, labelled: what the monitor shows for it.
        sent, failed = _traffic(client, data.after, feedback=True, stop=None)
        source = "the new scanner's" if data.after is not data.live else "the same"
        out.say(
            "traffic",
            f"{sent} requests ({len(data.after)} rows, {source} measurements) to "
            f"{MODEL}/{champion}, {failed} failed; true labels sent back as feedback",
        )
        labelled = len(data.after) - 5 * failed + (0 if result.passed else len(data.live))
        out.monitored(client, champion, labelled, promoted=result.passed, before=marks)
    out.urls(url, features(data.after[0]), time.monotonic() - started, token)


def demo(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help="Server (default: the configured one)."),
    scenario: str = typer.Option(
        "promote",
        "--scenario",
        help="promote: a shift the champion cannot handle, the retrain wins and takes over; "
        "refuse: a batch with scrambled labels, the gate refuses the retrain.",
    ),
    budget_s: float = typer.Option(20.0, "--budget-s", min=1, max=3600, help="AutoML budget."),
    canary_s: float = typer.Option(
        5.0, "--canary-s", min=0, max=600, help="Least time the canary is judged before promotion."
    ),
) -> None:
    """Run the whole loop on a demo project: ingest, train, deploy, traffic, new data, retrain."""
    from loopml.cli._context import state

    cli = state(ctx)
    run_demo(
        url or cli.settings.client.url,
        budget_s=budget_s,
        canary_s=canary_s,
        scenario=scenario,
        token=cli.token(),
    )
