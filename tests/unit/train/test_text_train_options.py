"""``TextTrainOptions``: the text trainer's options, built from their flat names
(``loopml.train_text_model``'s keywords, a text task's params) into typed groups."""

from __future__ import annotations

import pytest

from loopml.core.errors import ValidationError
from loopml.train.options import (
    TEXT_KEYWORDS,
    Checkpointing,
    FinetuneOptions,
    Registration,
    SearchOptions,
    TextTrainOptions,
    TrainingData,
)

DATA = TrainingData("reviews_snap", target="sentiment", task="text-classification")


def test_no_keyword_gives_the_defaults() -> None:
    assert TextTrainOptions.from_keywords(DATA, {}) == TextTrainOptions(DATA)


def test_each_keyword_reaches_its_group() -> None:
    options = TextTrainOptions.from_keywords(
        DATA,
        {
            "method": "finetune",
            "text_column": "review",
            "base": "./bert",
            "experiment": "e",
            "epochs": 1,
            "batch_size": 4,
            "learning_rate": 0.1,
            "max_length": 32,
            "device": "cpu",
            "tiny": {"dim": 8},
            "checkpoint_every_steps": 5,
            "checkpoint_every_s": 1.0,
            "spot": True,
            "checkpoint_key": "k",
            "budget_s": 9.0,
            "metric": "accuracy",
            "seed": 3,
            "estimators": ["lrl1"],
            "max_iter": 2,
            "n_jobs": 1,
            "max_model_mb": 5.0,
            "register_as": "s",
            "description": "d",
        },
    )

    assert options == TextTrainOptions(
        DATA,
        method="finetune",
        text_column="review",
        base="./bert",
        experiment="e",
        finetune=FinetuneOptions(1, 4, 0.1, 32, "cpu", {"dim": 8}),
        checkpoints=Checkpointing(5, 1.0, spot=True, key="k"),
        search=SearchOptions(9.0, "accuracy", 3, ["lrl1"], 2, 1, 5.0),
        registration=Registration("s", "d"),
    )


def test_a_description_without_a_model_registers_nothing() -> None:
    options = TextTrainOptions.from_keywords(DATA, {"description": "d", "register_as": None})
    assert options.registration is None


def test_an_unknown_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="unknown text training options") as caught:
        TextTrainOptions.from_keywords(DATA, {"epoch": 2})
    assert "'epochs'" in caught.value.message
    assert sorted(TEXT_KEYWORDS)[0] in caught.value.message
