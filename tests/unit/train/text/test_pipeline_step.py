"""The ``train_text`` pipeline built-in: its options are checked before anything trains."""

from __future__ import annotations

import pytest

from loopml.core.errors import ValidationError
from loopml.pipelines.catalog import BUILTINS
from loopml.train.text.service import text_options


def test_train_text_is_a_builtin_taking_the_text_options() -> None:
    builtin = BUILTINS["train_text"]
    assert builtin.impl == "loopml.pipelines.builtins.text:train_text"
    assert {"dataset", "target", "task", "params"} <= set(builtin.params)
    assert text_options({"budget_s": 5, "method": "embeddings"}, search=True) == {
        "budget_s": 5,
        "method": "embeddings",
    }
    # train_model passes the search settings itself: as params they would be given twice.
    with pytest.raises(ValidationError, match="budget_s"):
        text_options({"budget_s": 5})


def test_the_step_takes_the_search_options_train_model_takes() -> None:
    search = {"metric": "accuracy", "n_jobs": 1, "max_model_mb": 5.0, "estimators": ["lrl1"]}
    assert text_options(search, search=True) == search
    # As train_model's params they would be given twice: it passes them itself.
    with pytest.raises(ValidationError, match="metric"):
        text_options({"metric": "accuracy"})
