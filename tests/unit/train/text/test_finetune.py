"""Fine-tuning a tiny random encoder on made-up reviews, end to end in the embedded store:
train, package (ONNX with parity, tokenizer inside), register, evaluate, the gate."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from loopml.core.errors import ArtifactIntegrityError, GateRequiredError, ValidationError
from loopml.registry import gate, set_alias
from loopml.registry.evaluate import champion_scorer
from loopml.registry.packages import load_version
from loopml.sdk.training import train_model
from loopml.settings import Settings
from loopml.wiring import open_artifact_store, open_metadata_store
from tests.text_data import TINY, ingest_reviews, reviews

pytest.importorskip("torch")
pytest.importorskip("transformers")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


@pytest.fixture
def settings() -> Settings:
    settings = Settings()
    ingest_reviews(settings, "reviews", reviews(160), stratify="sentiment")
    return settings


def _options(**extra: object) -> dict[str, object]:
    return {"method": "finetune", "epochs": 10, "batch_size": 16, "tiny": TINY} | extra


def test_finetune_packages_registers_and_the_gate_refuses_a_worse_model(
    settings: Settings, tmp_path: object
) -> None:
    good = train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params=_options(),
        register_as="sentiment",
        settings=settings,
    )
    assert good.model_format == "onnx"
    assert good.details["method"] == "finetune"
    assert good.details["text_column"] == "review"
    assert good.evaluation is not None
    assert good.evaluation.metrics["accuracy"] >= 0.9
    assert good.evaluation.details["model_format"] == "onnx"

    store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
    _version, loaded = load_version(store, artifacts, "default", "sentiment/1", tmp_path)  # type: ignore[arg-type]
    manifest = loaded.manifest
    assert manifest.flavor == "transformers"
    assert manifest.parity is not None
    assert manifest.parity.passed
    assert manifest.parity.max_abs_diff < 1e-4
    assert sorted(manifest.files) == [
        "input_example.json",
        "model.onnx",
        "text.json",
        "tokenizer.json",
    ]
    frame = pd.DataFrame({"review": ["the film was superb and lovely", "the plot was awful"]})
    assert list(loaded.predict(frame)) == ["pos", "neg"]
    proba = loaded.predict_proba(frame)
    assert proba.shape == (2, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)

    scorer = champion_scorer(store, artifacts, "default", actor="t")
    assert gate.judge_version(
        store, "default", "sentiment", 1, actor="t", score_champion=scorer
    ).passed
    set_alias(store, "default", "sentiment", "champion", 1, actor="t")
    # One step at a tiny learning rate: barely trained, it must lose on the same eval set.
    worse = train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params=_options(epochs=1, learning_rate=1e-6),
        register_as="sentiment",
        settings=settings,
    )
    assert worse.evaluation is not None
    assert worse.evaluation.metrics["accuracy"] < good.evaluation.metrics["accuracy"]
    verdict = gate.judge_version(
        store,
        "default",
        "sentiment",
        2,
        actor="t",
        eval_hash=good.eval_hash,
        score_champion=scorer,
    )
    assert not verdict.passed
    with pytest.raises(GateRequiredError):
        set_alias(store, "default", "sentiment", "champion", 2, actor="t")
    store.dispose()


def test_text_regression_undoes_the_target_scale(settings: Settings) -> None:
    outcome = train_model(
        "reviews_snap",
        target="stars",
        task="text-regression",
        params=_options(epochs=6, text_column="review"),
        register_as="stars",
        settings=settings,
    )
    assert outcome.evaluation is not None
    assert outcome.evaluation.task == "regression"
    # The stars are 1 to 5 from the words: the model must learn them, in their own scale.
    assert outcome.evaluation.metrics["r2"] > 0.5


def test_a_tampered_tokenizer_is_refused(settings: Settings, tmp_path: object) -> None:
    from pathlib import Path

    from loopml.packaging import load_model

    train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params=_options(epochs=1),
        register_as="s",
        settings=settings,
    )
    store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
    version, _loaded = load_version(store, artifacts, "default", "s/1", Path(str(tmp_path)))
    folder = Path(str(tmp_path)) / "s-1"
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["evil"] = 7
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ArtifactIntegrityError, match=r"tokenizer\.json"):
        load_model(folder, manifest_sha256=version.manifest_sha256)
    store.dispose()


def test_refusals(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="unknown text training options"):
        train_model(
            "reviews_snap",
            target="sentiment",
            task="text-classification",
            params={"epoch": 2},
            settings=settings,
        )
    with pytest.raises(ValidationError, match="no text column"):
        train_model(
            "reviews_snap",
            target="sentiment",
            task="text-classification",
            params=_options(text_column="nope"),
            settings=settings,
        )
    with pytest.raises(ValidationError, match="invalid method"):
        train_model(
            "reviews_snap",
            target="sentiment",
            task="text-classification",
            params={"method": "magic"},
            settings=settings,
        )
    with pytest.raises(ValidationError, match="not text"):
        train_model(
            "reviews_snap",
            target="sentiment",
            task="text-classification",
            params=_options(text_column="stars"),
            settings=settings,
        )
