"""MLflow's ``log_model`` + ``register_model`` against loopml and against MLflow's own server.

Issue 51: registering an MLflow-format model took 2.6x as long on loopml as on MLflow's
server, which only records the version (loopml packages it: builds its environment, converts
it in the sandbox with a parity check, verifies the package). Target: within 1.5x.

``python bench/mlflow_register.py --mlflow-python PATH`` (an interpreter with the full
``mlflow`` package and scikit-learn in its own venv: ``python3 -m venv /tmp/mlflow-server &&
/tmp/mlflow-server/bin/pip install mlflow==3.17.2 scikit-learn``) starts ``loopml up`` and
``mlflow server`` side by side, each on a SQLite file of a fresh folder, and runs the same
client script (``bench/_mlflow_register.py``: the serving benchmark's 100-tree forest,
``log_model`` then ``register_model``, which waits for the version as MLflow's client does)
against each in turn, ``--rounds`` versions a turn and ``--turns`` turns. Prints each
phase's median per server and the ratios, and where loopml's registration went (from the
version's events: accepted, packaged, ready).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import httpx
from tracking import _free_port, _serving

CLIENT = Path(__file__).with_name("_mlflow_register.py")
TARGET_RATIO = 1.5


def _client(python: str, uri: str, name: str, rounds: int) -> dict[str, list[object]]:
    done = subprocess.run(
        [python, str(CLIENT), uri, name, str(rounds)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"the MLflow client failed against {uri}:\n{done.stderr[-3000:]}")
    result: dict[str, list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _phases(url: str, name: str) -> list[tuple[float, float]]:
    """Per version of ``name``: seconds from registered to packaged, packaged to ready."""
    events = httpx.get(
        f"{url}/api/v1/events", params={"type": "model.version.*", "limit": 1000}, timeout=30
    ).json()["items"]
    at: dict[tuple[str, str], float] = {}
    for event in events:
        if event["subject"].startswith(f"{name}/"):
            when = datetime.fromisoformat(event["time"]).timestamp()
            at[(event["subject"], event["type"].rsplit(".", 1)[1])] = when
    out = []
    for subject in sorted({s for s, _ in at}):
        got = {k: v for (s, k), v in at.items() if s == subject}
        if {"registered", "packaged", "ready"} <= got.keys():
            out.append((got["packaged"] - got["registered"], got["ready"] - got["packaged"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlflow-python", required=True)
    parser.add_argument("--rounds", type=int, default=3, help="versions per turn")
    parser.add_argument("--turns", type=int, default=3, help="turns per server, alternating")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    env["OMP_WAIT_POLICY"] = "passive"
    samples: dict[str, dict[str, list[float]]] = {
        who: {"log": [], "register": [], "total": []} for who in ("loopml", "mlflow")
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "loopml"
        home.mkdir()
        mine, theirs = _free_port(), _free_port()
        up = [sys.executable, "-m", "loopml.cli.main", "up", "--port", str(mine)]
        server = [
            args.mlflow_python,
            *("-m", "mlflow", "server", "--port", str(theirs), "--workers", "1"),
            *("--backend-store-uri", f"sqlite:///{Path(tmp) / 'mlflow.db'}"),
            *("--artifacts-destination", str(Path(tmp) / "mlflow-artifacts")),
        ]
        urls = {"loopml": f"http://127.0.0.1:{mine}", "mlflow": f"http://127.0.0.1:{theirs}"}
        with (
            _serving(
                up,
                f"{urls['loopml']}/api/v1/health",
                {**env, "LOOPML_HOME": str(home)},
                home / "log",
            ),
            _serving(server, f"{urls['mlflow']}/health", env, Path(tmp) / "mlflow.log"),
        ):
            for turn in range(args.turns):
                order = ("loopml", "mlflow") if turn % 2 == 0 else ("mlflow", "loopml")
                for who in order:
                    got = _client(args.mlflow_python, urls[who], "forest", args.rounds)
                    bad = [s for s in got["status"] if s != "READY"]
                    if bad:
                        raise SystemExit(f"{who}: versions ended {bad}")
                    for log_s, register_s in zip(got["log"], got["register"], strict=True):
                        samples[who]["log"].append(float(log_s))  # type: ignore[arg-type]
                        samples[who]["register"].append(float(register_s))  # type: ignore[arg-type]
                        samples[who]["total"].append(float(log_s) + float(register_s))  # type: ignore[arg-type]
                    print(f"turn {turn + 1} {who}: done", flush=True)
            phases = _phases(urls["loopml"], "forest")
    print(f"\n{args.turns * args.rounds} versions each, medians (seconds):")
    print(f"{'phase':<12}{'loopml':>10}{'mlflow':>10}{'ratio':>8}")
    for phase in ("log", "register", "total"):
        a = statistics.median(samples["loopml"][phase])
        b = statistics.median(samples["mlflow"][phase])
        print(f"{phase:<12}{a:>10.2f}{b:>10.2f}{a / b:>7.2f}x")
    ratio = statistics.median(samples["loopml"]["total"]) / statistics.median(
        samples["mlflow"]["total"]
    )
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"log + register: {ratio:.2f}x MLflow's server (target <= {TARGET_RATIO}x): {verdict}")
    if phases:
        packaged = statistics.median(p for p, _ in phases)
        ready = statistics.median(r for _, r in phases)
        print(
            f"loopml, from the version's events: registered -> packaged {packaged:.2f} s "
            f"(environment, sandboxed conversion, upload), packaged -> ready {ready:.2f} s "
            "(verification); MLflow's client polls every 3 s"
        )
        each = ", ".join(f"{p:.2f}" for p, _ in phases)
        print(f"registered -> packaged, each version (the first builds the environment): {each}")


if __name__ == "__main__":
    main()
