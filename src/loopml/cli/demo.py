"""``loopml demo``: the whole loop on a data set that ships with scikit-learn, narrated.

It runs as a client against a running server (``loopml up``, or ``loopml up --demo`` which
starts it in the background once the server answers): a ``demo`` project, the breast-cancer
data ingested in batches into a lake table, the shipped ``retrain`` loop applied and run to a
deployed champion, live traffic and feedback through the gateway, then a shifted batch
(feature drift and some flipped labels) that starts a retrain whose gate decides whether the
new version replaces the champion (after a canary that sees live traffic).

Running it again replaces what an earlier demo left (deployment, model, table).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._output import console

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.core.pipelines import PipelineRun

PROJECT = "demo"
TABLE = "patients"
MODEL = "cancer"
DEPLOYMENT = "cancer-api"
TARGET = "malignant"
TRIGGER = "retrain-on-rows"
CONTRACT: dict[str, Any] = {
    "columns": {
        TARGET: {"allowed": [0, 1]},
        "mean_radius": {"min": 0},
        "mean_area": {"min": 0},
    },
    "rows": {"min": 100},
}
"""What the loop's ``validate`` step checks each snapshot of the table against."""


def _rows(seed: int = 0) -> list[dict[str, Any]]:
    """The breast-cancer data set (569 rows, 30 features) as records, shuffled."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame = frame.rename(columns={"target": TARGET})
    # scikit-learn codes benign as 1: the label the demo predicts is "is it malignant".
    frame[TARGET] = 1 - frame[TARGET]
    order = np.random.default_rng(seed).permutation(len(frame))
    records: list[dict[str, Any]] = frame.iloc[order].to_dict(orient="records")
    return records


def _shifted(rows: list[dict[str, Any]], seed: int = 1) -> list[dict[str, Any]]:
    """``rows`` after a drift: the size features grow by 25 % and one label in ten flips."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shifted = []
    for row in rows:
        moved = dict(row)
        for key, value in row.items():
            if key != TARGET and ("radius" in key or "area" in key or "perimeter" in key):
                moved[key] = float(value) * 1.25
        if rng.random() < 0.1:
            moved[TARGET] = 1 - int(row[TARGET])
        shifted.append(moved)
    return shifted


def _say(step: str, text: str) -> None:
    console.print(f"[bold cyan]{step:>9}[/]  {text}", highlight=False)


def _reset(client: Client) -> None:
    """Remove what an earlier demo left, so a second demo starts the same way."""
    from loopml.core.errors import AlreadyExistsError, NotFoundError

    with contextlib.suppress(AlreadyExistsError):
        client.projects.create(PROJECT, "loopml demo: the loop on scikit-learn's breast cancer")
    cleanups: tuple[Callable[[], None], ...] = (
        lambda: _delete_trigger(client),
        lambda: client.deployments.delete(DEPLOYMENT, project=PROJECT),
        lambda: client.models.delete(MODEL, force=True, project=PROJECT),
        lambda: client.tables.delete(PROJECT, TABLE),
    )
    for cleanup in cleanups:
        with contextlib.suppress(NotFoundError):
            cleanup()


def _delete_trigger(client: Client) -> None:
    client.triggers.delete(TRIGGER, project=PROJECT)


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
    for step in done.steps or []:
        _say("", f"[dim]{step.name:<9} {step.status.value.lower()}[/]")
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
            instances = [{k: v for k, v in r.items() if k != TARGET} for r in chunk]
            try:
                answer = client.deployments.predict(DEPLOYMENT, instances, project=PROJECT)
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


def _start(client: Client, inputs: dict[str, Any], rows: list[dict[str, Any]]) -> PipelineRun:
    """Append ``rows``; the trigger on new rows starts the run, which this returns."""
    before = {r.id for r in client.pipelines.runs(project=PROJECT, pipeline="retrain").items}
    commit = client.tables.append_records(PROJECT, TABLE, rows)
    _say("ingest", f"{len(rows)} new rows -> {TABLE}@{commit.version}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for run in client.pipelines.runs(project=PROJECT, pipeline="retrain").items:
            if run.id not in before:
                return run
        time.sleep(0.25)
    raise typer.Exit(_fail(f"trigger {TRIGGER!r} started no run within 60 s of the append"))


def run_demo(url: str, budget_s: float = 10.0, canary_s: float = 5.0) -> None:
    """The demo against the server at ``url`` (see the module docstring)."""
    from loopml.client import Client
    from loopml.pipelines import loops

    started = time.monotonic()
    with Client(url, timeout=60) as client:
        client.health()
        _say("server", f"{url}  (API {url}/api/v1, OpenAPI {url}/api/v1/openapi.json)")
        _reset(client)
        rows = _rows()
        base, live = rows[:400], rows[400:]
        first = client.tables.append_records(PROJECT, TABLE, base[:200])
        _say(
            "ingest", f"breast cancer (scikit-learn): 200 rows -> {PROJECT}/{TABLE}@{first.version}"
        )
        client.tables.set_contract(PROJECT, TABLE, CONTRACT)
        _say("contract", f"{TABLE}: {TARGET} in (0, 1), sizes >= 0, at least 100 rows")
        applied = client.pipelines.apply(loops.text("retrain"), project=PROJECT)
        version = applied.version
        _say("pipeline", f"{version.pipeline} v{version.version}: {' -> '.join(version.steps)}")
        inputs = _loop_inputs(budget_s, canary_s)
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
        _say("trigger", f"{TRIGGER}: run retrain when {TABLE} gains 100 rows")
        run = _start(client, inputs, base[200:])
        _say("run", f"{run.id}: AutoML for {budget_s:g} s, gate, deploy ...")
        done = _wait(client, run, timeout_s=budget_s * 4 + 180)
        outputs = done.outputs or {}
        _say("champion", f"{outputs.get('model')} serves {DEPLOYMENT}: {_metrics(outputs)}")
        sent, failed = _traffic(client, live, feedback=True, stop=None)
        _say("traffic", f"{sent} requests ({len(live)} rows), {failed} failed; labels sent back")
        shifted = _shifted(live[:150])
        stop = threading.Event()
        counts: list[tuple[int, int]] = []
        sender = threading.Thread(
            target=lambda: counts.append(_traffic(client, live, feedback=False, stop=stop)),
            daemon=True,
        )
        sender.start()
        try:
            run = _start(client, inputs, shifted)
            _say("drift", "sizes +25 %, 10 % labels flipped: retrain started, the gate decides")
            done = _wait(client, run, timeout_s=budget_s * 4 + 180)
        finally:
            stop.set()
            sender.join(30)
        _verdict(client, done)
        during = counts[0] if counts else (0, 0)
        _say("swap", f"{during[0]} requests during the retrain, {during[1]} failed")
    _urls(url, time.monotonic() - started)


def _metrics(outputs: dict[str, Any]) -> str:
    found = outputs.get("metrics") or {}
    shown = [f"{k} {v:.3f}" for k, v in sorted(found.items()) if isinstance(v, float)][:3]
    return ", ".join(shown) or "no metrics"


def _verdict(client: Client, run: PipelineRun) -> None:
    outputs = run.outputs or {}
    champion = client.models.resolve(f"{MODEL}@champion", project=PROJECT)
    if outputs.get("passed"):
        _say("gate", f"passed: {outputs.get('model')} won ({_metrics(outputs)}); after its canary")
        _say("champion", f"{MODEL}/{champion.version} now serves {DEPLOYMENT}")
    else:
        _say("gate", f"refused {outputs.get('model')} ({_metrics(outputs)}): deploy skipped")
        _say("champion", f"{MODEL}/{champion.version} keeps serving {DEPLOYMENT}")


def _urls(url: str, elapsed_s: float) -> None:
    sample = '{"instances": [{"mean_radius": 17.99, "mean_texture": 10.38}]}'
    console.print(
        f"\n[bold]demo done in {elapsed_s:.0f} s[/]\n"
        f"  API         {url}/api/v1/projects/{PROJECT}/deployments/{DEPLOYMENT}\n"
        f"  pipeline    {url}/api/v1/projects/{PROJECT}/pipelines/retrain\n"
        f"  deployment  {url}/projects/{PROJECT}/deployments/{DEPLOYMENT}/predict\n"
        f"  try         curl -s {url}/projects/{PROJECT}/deployments/{DEPLOYMENT}/predict "
        f"-H 'content-type: application/json' -d '{sample}'\n"
        f"              (a missing column is answered 422 with its name: send all 30)",
        highlight=False,
    )


def demo(
    ctx: typer.Context,
    url: str | None = typer.Option(None, "--url", help="Server (default: the configured one)."),
    budget_s: float = typer.Option(10.0, "--budget-s", min=1, max=3600, help="AutoML budget."),
    canary_s: float = typer.Option(5.0, "--canary-s", min=0, max=600, help="Canary watch."),
) -> None:
    """Run the whole loop on a demo project: ingest, train, deploy, traffic, drift, retrain."""
    from loopml.cli._context import state

    run_demo(url or state(ctx).settings.client.url, budget_s=budget_s, canary_s=canary_s)
