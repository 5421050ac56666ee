"""What ``loopml demo`` prints: each step's outcome, the gate's decision with both scores on
the same eval set, and the URLs with a ``curl`` line that works when pasted.

A step line says what the step did (``done``, ``skipped``); the gate's decision is a line of
its own, read from the stored verdict, so the two can never read as a contradiction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.cli import _endpoints
from loopml.cli._demo_data import DEPLOYMENT, MODEL, PROJECT
from loopml.cli._output import console

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.core.gate import GateResult
    from loopml.core.pipelines import PipelineRun

_DID = {"SUCCEEDED": "done", "CACHED": "done (cached)", "SKIPPED": "skipped"}


def say(step: str, text: str) -> None:
    """One narrated line: the step's name right-aligned, then what happened."""
    console.print(f"[bold cyan]{step:>9}[/]  {text}", highlight=False, soft_wrap=True)


def steps(run: PipelineRun) -> None:
    """What each step of ``run`` did, on one line."""
    parts = []
    judged = any(s.name == "gate" and s.status.value == "SUCCEEDED" for s in run.steps or [])
    for step in run.steps or []:
        did = _DID.get(step.status.value, step.status.value.lower())
        if step.name == "deploy" and step.status.value == "SKIPPED" and judged:
            did = "skipped (the gate refused)"
        parts.append(f"{step.name} {did}")
    say("", f"[dim]{', '.join(parts)}[/]")


def verdict(client: Client, version: int) -> GateResult:
    """The gate's newest verdict on ``MODEL/version`` (the run's gate step stored it)."""
    return client.models.gate_results(MODEL, version, limit=1, project=PROJECT)[0]


def first_verdict(result: GateResult) -> None:
    """The first run's gate: no champion yet, the version's own score."""
    metric, value = _primary(result)
    say(
        "gate",
        f"passed {MODEL}/{result.version}: no champion yet; {metric} {value} on its eval set "
        f"{result.eval_hash[:12]}",
    )


def comparison(client: Client, result: GateResult) -> None:
    """Champion and challenger side by side on the challenger's eval set, then the decision."""
    metric, _ = _primary(result)
    champion = result.champion_version
    theirs = _metrics_on(client, champion, result.eval_hash) if champion else {}
    mine = _metrics_on(client, result.version, result.eval_hash)
    shown = [metric] + [m for m in ("accuracy", "f1") if m != metric and m in mine]
    say("eval set", f"{result.eval_hash[:12]}: the same rows score both versions")
    say("", f"{'':<22}" + "".join(f"{m:>10}" for m in shown))
    if champion:
        say("", f"{'champion   ' + MODEL + '/' + str(champion):<22}" + _cells(theirs, shown))
    say("", f"{'challenger ' + MODEL + '/' + str(result.version):<22}" + _cells(mine, shown))
    failed = [r.message for r in result.rules if not r.passed]
    if result.passed:
        say("gate", f"passed {MODEL}/{result.version}: every rule of the policy holds")
    else:
        say("gate", f"refused {MODEL}/{result.version}: {'; '.join(failed)}")


def _primary(result: GateResult) -> tuple[str, str]:
    chosen = [r for r in result.rules if r.rule == "must_beat"] or result.rules
    if not chosen or chosen[0].metric is None:
        return "score", "-"
    value = chosen[0].value
    return chosen[0].metric, "-" if value is None else f"{value:.3f}"


def _metrics_on(client: Client, version: int, eval_hash: str) -> dict[str, float]:
    for stored in client.models.evaluations(MODEL, version, project=PROJECT):
        if stored.report.eval_hash == eval_hash:
            return dict(stored.report.metrics)
    return {}


def _cells(metrics: dict[str, float], names: list[str]) -> str:
    return "".join(f"{metrics[m]:>10.3f}" if m in metrics else f"{'-':>10}" for m in names)


MONITOR_WAIT_S = 120.0
"""How long the demo waits for the monitor to read the champion's labelled traffic."""


Marks = dict[tuple[str, int, str], int]
"""Labels per window of the deployment (model, version, start) before this run's traffic."""


def label_marks(client: Client) -> Marks:
    """The labels each of the deployment's windows already holds: an earlier demo on the same
    home left its windows (same model name, same version numbers), which ``monitored`` must
    not take for this run's."""
    view = client.monitoring.view(DEPLOYMENT, project=PROJECT)
    return {_window_key(w): int(w["labels"]) for w in view["windows"]}


def _window_key(window: dict[str, Any]) -> tuple[str, int, str]:
    return (window["model"], int(window["version"]), str(window["start"]))


def monitored(
    client: Client, version: int, labels: int, *, promoted: bool, before: Marks | None = None
) -> None:
    """What ``loopml monitor`` (and the portal's page) shows for the deployment now, read
    from the monitor itself once it has read this run's ``labels`` labelled rows of the
    champion (it reads on its own interval, behind real time): the labels its windows hold
    beyond ``before`` (``label_marks`` before the run's traffic); a line saying it has not
    yet otherwise."""
    import time

    before = before or {}
    deadline = time.monotonic() + MONITOR_WAIT_S
    while True:
        view = client.monitoring.view(DEPLOYMENT, project=PROJECT)
        mine = [w for w in view["windows"] if (w["model"], w["version"]) == (MODEL, version)]
        counted = sum(w["labels"] - before.get(_window_key(w), 0) for w in mine)
        now = view["now"]
        if now["version"] == version and counted >= labels:
            break
        if time.monotonic() > deadline:
            say(
                "monitor",
                f"{MODEL}/{version} has not been read by the monitor yet (it reads every "
                f"monitor.interval_s, behind real time): loopml monitor shows it shortly",
            )
            return
        time.sleep(1.0)
    say("monitor", figures(now, promoted=promoted))


def figures(now: dict[str, Any], *, promoted: bool) -> str:
    """The monitor's figures for the deployment now (``view["now"]``), as one sentence."""
    window = now["window"]
    summary = window["summary"]
    quality, drift = summary["quality"], summary["drift"]
    text = (
        f"{now['model']}/{now['version']} takes {now['traffic_percent']} % of {DEPLOYMENT}'s "
        f"traffic; its newest window: {window['rows']} rows, {quality['labels']} labels"
    )
    if quality.get("accuracy") is not None:
        text += f", live accuracy {quality['accuracy']:.2f}"
    if drift.get("status") != "ready":
        return text + f"; drift off ({drift.get('reason', 'no reference')})"
    text += (
        f"; against its training rows ({drift.get('source', 'its reference')}) "
        f"{len(drift['drifted'])} of {drift['judged']} features drifted"
    )
    if promoted and drift["drifted"]:
        text += " (it was trained on both scanners' rows; the traffic now is the new one's)"
    return text


def predict_url(url: str) -> str:
    """Where clients call the demo's deployment (through the gateway)."""
    return _endpoints.predict_url(url, PROJECT, DEPLOYMENT)


def urls(url: str, row: dict[str, Any], elapsed_s: float, token: str | None = None) -> None:
    """The closing lines: where to look, and a prediction to try (with the demo's ``token``
    when authentication is on)."""
    console.print(
        f"\n[bold]demo done in {elapsed_s:.0f} s[/]\n"
        f"  portal      {url}/projects/{PROJECT}/deployments/{DEPLOYMENT}\n"
        f"  predict     {predict_url(url)}\n"
        f"  deployment  {url}/api/v1/projects/{PROJECT}/deployments/{DEPLOYMENT}\n"
        f"  pipeline    {url}/api/v1/projects/{PROJECT}/pipelines/retrain\n"
        f"  status      loopml status -p {PROJECT}\n"
        f"  monitor     loopml monitor {DEPLOYMENT} -p {PROJECT}\n"
        "  try (one line, a real row with all 30 features):",
        highlight=False,
        soft_wrap=True,
    )
    # Plain print: Rich would wrap the long line, and a wrapped line does not paste.
    print(_endpoints.curl_line(predict_url(url), row, token), flush=True)
