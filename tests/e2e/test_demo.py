"""``loopml demo`` end to end on the embedded defaults (SQLite), in both scenarios: the
champion is trained on the first batch; a new batch starts a retrain through the trigger on
new rows; the gate promotes it (``promote``: a shift the champion cannot handle) or refuses
it (``refuse``: scrambled labels), and the narration says exactly what happened. The curl
line and the URLs it prints work as printed.

CI runs each scenario once (a demo takes about two minutes there): ``refuse`` here, and
``promote`` in ``test_portal_browser.py``, whose platform the demo fills (with
authentication on: the printed lines must work with the user's token), checked there by
``check_the_demo_told`` below. ``LOOPML_DEMO_RUNS=5`` runs each scenario five times here on
the same server, each demo replacing what the last one left, as issue 19 asks.
``tests/unit/cli/test_demo_story.py`` checks the gate's decisions of five runs per scenario
without a server, in CI."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loopml.core.pipelines import RunStatus, StepStatus
from tests.waiting import REQUEST_GUARD_S

from .conftest import RunningServer, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("demo-home")
    # The monitor reads every second, 4 s behind (not every 30 s): the demo waits for it to
    # have read the champion's labelled traffic before it says what the monitor shows.
    fast = {"LOOPML_MONITOR_INTERVAL_S": "1", "LOOPML_MONITOR_LAG_S": "4"}
    with running_server(home, fast) as running:
        yield running


def _scores(out: str, role: str) -> list[float]:
    found = re.search(rf"{role}\s+cancer/\d+\s+([\d.]+)\s+([\d.]+)", out)
    assert found, out
    return [float(found.group(1)), float(found.group(2))]


def _printed_lines_work(server: RunningServer, out: str, champion: int) -> None:
    """Each line the demo prints works pasted into the user's shell (``server.env``: with
    authentication on, ``LOOPML_TOKEN`` is set there, as the demo's own user had it)."""
    curl = next(line for line in out.splitlines() if line.startswith("curl -s "))
    pasted = subprocess.run(
        ["bash", "-c", curl], capture_output=True, text=True, timeout=30, env=server.env
    )
    answer = json.loads(pasted.stdout)
    assert answer["predictions"][0] in (0, 1), answer
    assert answer["version"] == champion
    urls = re.findall(r"^  (?:deployment|pipeline) +(http\S+)$", out, re.M)
    assert len(urls) == 2, out
    token = server.env.get("LOOPML_TOKEN")
    bearer = {"authorization": f"Bearer {token}"} if token else {}
    for url in urls:
        assert httpx.get(url, headers=bearer, timeout=REQUEST_GUARD_S).status_code == 200, url
    [monitor] = re.findall(r"^  monitor +loopml (.+)$", out, re.M)
    shown = server.cli(*monitor.split())
    assert shown.returncode == 0, shown.stderr
    assert "demo/cancer-api" in shown.stdout, shown.stdout


def _the_monitor_shows_what_the_demo_said(
    server: RunningServer, out: str, champion: int, scenario: str
) -> None:
    """The demo's monitor line is the monitor's own answer, as ``loopml monitor -o json``
    gives it: the champion, its labels and its drift against its training rows."""
    said = re.search(
        rf"monitor  cancer/{champion} takes 100 % of cancer-api's traffic; its newest window: "
        r"(\d+) rows, (\d+) labels, live accuracy ([\d.]+); against its training rows "
        r"\((.+?)\) (\d+) of (\d+) features drifted",
        out,
    )
    assert said, out
    shown = server.cli("monitor", "cancer-api", "-p", "demo", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    now = view["now"]
    assert (now["model"], now["version"]) == ("cancer", champion)
    window = now["window"]
    quality, drift = window["summary"]["quality"], window["summary"]["drift"]
    # The monitor may have read more since (the demo's traffic ended before it spoke).
    assert int(said.group(1)) <= window["rows"]
    assert int(said.group(2)) <= quality["labels"]
    # The champion's own labels arrived: 119 of its traffic, and a refused challenger's
    # champion had the first batch's live labels too. Over all its (hourly) windows: the
    # newest holds only what came after the hour turned, if it turned during the demo (in
    # census run 17 it did, and it held 99).
    mine = [w for w in view["windows"] if (w["model"], w["version"]) == ("cancer", champion)]
    labelled = 119 if scenario == "promote" else 2 * 119
    assert sum(int(w["labels"]) for w in mine) >= labelled - 5, mine
    assert said.group(4) == drift["source"]
    assert "train" in drift["source"]  # its reference: the rows it was trained on
    assert int(said.group(6)) == drift["judged"] == 30
    assert quality["accuracy"] >= 0.85  # the champion handles the traffic it gets
    if scenario == "promote":
        assert "(it was trained on both scanners' rows" in out or said.group(5) == "0"


# How many times each scenario runs (``LOOPML_DEMO_RUNS``; once by default).
RUNS = int(os.environ.get("LOOPML_DEMO_RUNS", "1"))


# One run of ``promote`` is test_portal_browser.py's demo (see the module's docstring).
SCENARIOS = ["promote", "refuse"] if RUNS > 1 else ["refuse"]
DEMO_ARGS = ("--budget-s", "8", "--canary-s", "3")
"""The demo's options in these tests and in test_portal_browser.py's. The champion and the
retrain each search for 8 s, not the default 20: on 150 and 450 rows of the demo's data two
trials already tell the story (``tests/unit/cli/test_demo_story.py`` checks the gate's
verdicts at ``max_iter=2`` for every learner), and the two demos of a CI run spend 48 s less
training."""


@pytest.mark.timeout(660)
@pytest.mark.parametrize("attempt", range(1, RUNS + 1))
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_demo_tells_its_scenario_every_time(
    server: RunningServer, scenario: str, attempt: int
) -> None:
    done = server.cli("demo", "--scenario", scenario, *DEMO_ARGS, timeout=640)
    assert done.returncode == 0, done.stdout + done.stderr
    check_the_demo_told(server, done.stdout, scenario)


def check_the_demo_told(server: RunningServer, out: str, scenario: str) -> None:
    """What the demo said (``out``) is what happened, on the platform of ``server``, and its
    printed lines work; as the user of ``server.env``'s ``LOOPML_TOKEN`` if it has one."""
    from loopml.client import Client

    token = server.env.get("LOOPML_TOKEN")
    assert "champion  cancer/1 serves cancer-api" in out, out
    assert "119 rows) through the gateway, 0 failed" in out, out
    champion_scores, challenger_scores = _scores(out, "champion"), _scores(out, "challenger")
    if scenario == "promote":
        assert "gate  passed cancer/2: every rule of the policy holds" in out, out
        assert challenger_scores[0] >= champion_scores[0] + 0.01
        assert re.search(r"swap  cancer/2 served a 20 % canary .* 0 failed$", out, re.M), out
        assert "refused" not in out
        assert "keeps serving" not in out
    else:
        assert "gate  refused cancer/2: roc_auc = " in out, out
        assert challenger_scores[0] < 0.9
        assert re.search(
            r"cancer/1 keeps serving cancer-api \(deploy skipped\); .* 0 failed$", out, re.M
        )
        assert "swap" not in out
        assert "passed cancer/2" not in out
    champion = 2 if scenario == "promote" else 1
    _printed_lines_work(server, out, champion)

    with Client(server.url, token=token) as client:
        runs = client.pipelines.runs(project="demo", pipeline="retrain").items[:2]
        assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 2
        assert runs[0].actor == "trigger:retrain-on-rows"  # the newest: the retrain
        steps = {
            s.name: s for s in client.pipelines.get_run(runs[0].id, project="demo").steps or []
        }
        deployed = StepStatus.SUCCEEDED if scenario == "promote" else StepStatus.SKIPPED
        assert steps["deploy"].status == deployed
        assert client.models.resolve("cancer@champion", project="demo").version == champion
        deployment = client.deployments.get("cancer-api", project="demo")
        served = {r.number: r.version for r in deployment.revisions}
        assert [served[n] for n, pct in deployment.traffic.items() if pct] == [champion]
        feedback = client.sql("demo", "SELECT count(*) AS n FROM cancer_api__feedback")
        # The live rows' labels for the first champion, then the champion's own traffic's.
        assert feedback.rows[0][0] == 2 * 119
    _the_monitor_shows_what_the_demo_said(server, out, champion, scenario)

    if scenario == "refuse":
        return
    # The new champion judged again says it is the champion, and records itself as such.
    gate = server.cli("models", "gate", f"cancer/{champion}", "-p", "demo")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert f"cancer/{champion} is the champion" in gate.stdout
    with Client(server.url, token=token) as client:
        verdicts = list(client.events.iter(project="demo", type="gate.passed"))
    assert verdicts[-1].payload["champion_version"] == champion
