"""Interrupting a fine-tune for real: a child process SIGKILLed after a checkpoint, and one
sent SIGTERM in spot mode; the next attempt resumes from the newest checkpoint and ends with
the metrics of an uninterrupted run with the same seed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loopml.sdk.training import train_model
from loopml.settings import Settings
from tests.text_data import TINY, ingest_reviews, reviews
from tests.waiting import eventually

pytest.importorskip("torch")
pytest.importorskip("transformers")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

OPTIONS = {
    "method": "finetune",
    "epochs": 6,
    "batch_size": 8,
    "tiny": TINY,
    "checkpoint_every_steps": 4,
    "checkpoint_every_s": 0,
}
CHILD = """
import sys
import loopml
from loopml.train.text import TrainingInterrupted
try:
    loopml.train_model("reviews_snap", target="sentiment", task="text-classification",
                       params={options!r} | {{"spot": {spot}}})
except TrainingInterrupted as exc:
    print("interrupted:", exc.message, flush=True)
    sys.exit(3)
"""


@pytest.fixture
def settings() -> Settings:
    settings = Settings()
    ingest_reviews(settings, "reviews", reviews(160), stratify="sentiment")
    return settings


def _steps() -> list[int]:
    """The steps of the complete checkpoints in the artifact store, ascending."""
    home = Path(os.environ["LOOPML_HOME"])
    return sorted(int(p.parent.name) for p in home.rglob("checkpoints/*/*/_COMPLETE"))


def _start_child(spot: bool) -> subprocess.Popen[str]:
    code = CHILD.format(options=OPTIONS, spot=spot)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[4],
    )


def _wait_for_checkpoint(child: subprocess.Popen[str], timeout: float = 60) -> list[int]:
    try:
        eventually(
            lambda: _steps() or child.poll() is not None, timeout, "a checkpoint", interval_s=0.005
        )
    except AssertionError:
        child.kill()
        child.communicate()
        raise
    if steps := _steps():
        return steps
    _, err = child.communicate()
    raise AssertionError(f"the child ended before a checkpoint: {err[-3000:]}")


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(settings: Settings) -> None:
    child = _start_child(spot=False)
    seen = _wait_for_checkpoint(child)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    left = _steps()
    assert left
    assert left[-1] >= seen[-1]
    assert left[-1] < 90, "the child finished before it was killed"

    resumed = train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params=OPTIONS,
        register_as="sent",
        settings=settings,
    )
    assert resumed.resumed_from == left[-1]
    assert _steps() == [], "a finished training leaves no checkpoint behind"

    straight = train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params=OPTIONS,
        checkpoint_key="uninterrupted",
        register_as="sent",
        settings=settings,
    )
    assert straight.resumed_from is None
    assert resumed.evaluation is not None
    assert straight.evaluation is not None
    for name, value in straight.evaluation.metrics.items():
        assert resumed.evaluation.metrics[name] == pytest.approx(value, abs=1e-5), name
    assert resumed.details["final_loss"] == pytest.approx(straight.details["final_loss"], abs=1e-5)


def test_spot_sigterm_checkpoints_before_it_exits(settings: Settings) -> None:
    child = _start_child(spot=True)
    seen = _wait_for_checkpoint(child)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, err
    assert "stopped on request after step" in out
    stopped_at = int(out.split("after step ")[1].split()[0])
    assert stopped_at >= seen[-1]
    assert _steps() == [stopped_at], "the checkpoint of the step it stopped after"

    resumed = train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params=OPTIONS,
        settings=settings,
    )
    assert resumed.resumed_from == stopped_at
