"""``loopml train`` and the gate from the shell against a real ``loopml up``: AutoML, a user
entrypoint that crashes and resumes, evaluation, the gate's verdict and guarded promotion."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from .conftest import RunningServer

pytestmark = pytest.mark.e2e

FIT = """
from pathlib import Path
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

def fit(ctx):
    if ctx.last_checkpoint() is None:
        (ctx.checkpoint_dir / "state.txt").write_text("half way")
        ctx.save_checkpoint(1)
        raise RuntimeError("node preempted")
    features = ctx.train.drop(columns=[ctx.target])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(features, ctx.train[ctx.target])
"""


def test_train_gate_and_promote_from_the_shell(server: RunningServer, tmp_path: Path) -> None:
    data = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, 7, 20, 27, 30]]
    data.columns = [f"f{i}" for i in range(7)] + ["y"]
    data.to_csv(tmp_path / "cancer.csv", index=False)
    assert server.cli("ingest", str(tmp_path / "cancer.csv"), "--table", "cancer").returncode == 0
    made = server.cli(
        "datasets", "create", "cancer_snap", "--from", "cancer", "--split", "0.25",
        "--stratify", "y",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr

    trained = server.cli(
        "train", "--dataset", "cancer_snap", "--target", "y", "--task", "classification",
        "--budget", "4", "--max-iter", "4", "--register", "cancer", "--json",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    outcome = json.loads(trained.stdout)
    assert outcome["version"] == 1
    assert outcome["evaluation"]["metrics"]["roc_auc"] > 0.9

    refused = server.cli("models", "promote", "cancer/1")
    assert refused.returncode == 1
    assert "has not judged it" in refused.stderr
    judged = server.cli("models", "gate", "cancer/1")
    assert judged.returncode == 0, judged.stderr
    assert "PASSED" in judged.stdout
    # The verdict line says what decided it.
    line = " ".join(judged.stdout.split())  # as one line, wherever the terminal wrapped it
    assert "no champion yet: nothing to beat on roc_auc" in line, judged.stdout
    as_json = server.cli("models", "gate", "cancer/1", "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    verdict = json.loads(as_json.stdout)
    assert (verdict["model"], verdict["version"], verdict["passed"]) == ("cancer", 1, True)
    assert server.cli("models", "promote", "cancer/1").returncode == 0

    (tmp_path / "userfit.py").write_text(textwrap.dedent(FIT))
    args = [
        "train", "--dataset", "cancer_snap", "--target", "y", "--task", "classification",
        "--entrypoint", "userfit:fit", "--register", "cancer",
    ]  # fmt: skip
    crashed = server.cli(*args, cwd=tmp_path)
    assert crashed.returncode == 1
    assert "error in your training code" in crashed.stderr
    assert "node preempted" in crashed.stderr
    assert 'userfit.py", line' in crashed.stderr
    resumed = server.cli(*args, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from"] == 1

    evaluated = server.cli("models", "evaluate", "cancer/2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["report"]["dataset"] == "cancer_snap@1"
    forced = server.cli(
        "models", "promote", "cancer/2", "--force", "--reason", "audited on purpose"
    )
    assert forced.returncode == 0, forced.stderr
    events = server.cli("events", "--type", "model.promotion.forced", "--json")
    assert "audited on purpose" in events.stdout


def test_train_names_the_columns_it_used_and_warns_about_an_identifier(
    server: RunningServer, tmp_path: Path
) -> None:
    data = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 7, 30]]
    data.columns = ["f0", "f1", "f2", "f3", "y"]
    data.insert(0, "customer_id", range(5000, 5000 + len(data)))
    data.to_csv(tmp_path / "ids.csv", index=False)
    assert server.cli("ingest", str(tmp_path / "ids.csv"), "--table", "ids").returncode == 0
    made = server.cli("datasets", "create", "ids_snap", "--from", "ids", "--split", "0.25")
    assert made.returncode == 0, made.stderr

    trained = server.cli(
        "train", "--dataset", "ids_snap", "--target", "y", "--task", "classification",
        "--budget", "30", "--max-iter", "3", "--max-model-mb", "1", "--n-jobs", "1",
    )  # fmt: skip

    assert trained.returncode == 0, trained.stderr
    assert "warning: column 'customer_id' not used, identifier-like: unique per row" in (
        trained.stderr
    )
    assert "--keep-columns customer_id" in trained.stderr
    lines = trained.stdout.splitlines()
    used = [line for line in lines if "columns used" in line]
    unused = [line for line in lines if "columns not used" in line]
    assert len(used) == 1, trained.stdout
    assert "f0, f1, f2, f3" in used[0]
    assert len(unused) == 1, trained.stdout
    assert "customer_id" in unused[0]
    assert any("package" in line and " MB" in line for line in lines), trained.stdout
