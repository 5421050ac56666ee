"""``train_model``'s options on a text task: each reaches the embeddings method's AutoML
search, or is refused with a message naming it; and the outcome is filled as a tabular
run's is."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.core.errors import ValidationError
from loopml.core.run_search import RunSearch
from loopml.sdk.training import TrainOutcome, train_model
from loopml.settings import Settings
from loopml.train import tracking
from loopml.wiring import open_metadata_store
from tests.text_data import ingest_reviews, reviews, tiny_bert_folder

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert_folder(tmp_path_factory.mktemp("bert") / "tiny-bert")


@pytest.fixture
def settings() -> Settings:
    settings = Settings()
    frame = reviews(160)
    frame["shop"] = [f"s{i % 4}" for i in range(len(frame))]
    ingest_reviews(settings, "reviews", frame, stratify="sentiment")
    return settings


def _train(settings: Settings, bert: Path, **options: object) -> TrainOutcome:
    params = {"method": "embeddings", "base": str(bert), "text_column": "review"}
    params |= options.pop("params", {})  # type: ignore[arg-type]
    return train_model(
        "reviews_snap",
        target="sentiment",
        task="text-classification",
        budget_s=30,
        max_iter=3,
        params=params,
        settings=settings,
        **options,  # type: ignore[arg-type]
    )


def _run(settings: Settings, run_id: str) -> tuple[dict[str, str], dict[str, object], int]:
    store = open_metadata_store(settings)
    run = tracking.get_run(store, "default", run_id)
    # Asked by parent: the search folds child runs (trials) under their parent by default.
    trials = RunSearch(experiment="reviews_snap", parent_run_id=run_id, limit=500)
    found = tracking.search_runs(store, "default", trials)
    children = sum(1 for r in found.items if r.parent_run_id == run_id)
    store.dispose()
    return dict(run.params or {}), dict(run.metrics or {}), children


def test_the_search_options_reach_the_text_search(settings: Settings, bert: Path) -> None:
    outcome = _train(
        settings, bert, estimators=["rf"], metric="accuracy", n_jobs=2, max_model_mb=50.0
    )
    params, metrics, children = _run(settings, outcome.run_id)
    assert params["estimators"] == "rf"
    assert params["metric"] == "accuracy"
    assert params["n_jobs"] == "2"
    assert outcome.best_estimator == "rf"
    assert outcome.details["metric"] == "accuracy"
    assert outcome.details["n_jobs"] == 2
    # The outcome is filled from the search and the package, as a tabular run's.
    assert outcome.trials == children == metrics["trials"] >= 1
    assert outcome.best_score == metrics["best_accuracy"]
    assert outcome.package_mb is not None
    assert outcome.package_mb > 0
    assert outcome.used_columns == ["review"]
    assert set(outcome.excluded_columns) == {"stars", "shop"}


def test_max_model_mb_reaches_the_text_search(settings: Settings, bert: Path) -> None:
    with pytest.raises(ValidationError, match="max_model_mb"):
        _train(settings, bert, estimators=["rf"], max_model_mb=0.001)


def test_estimators_in_params_still_work_but_not_twice(settings: Settings, bert: Path) -> None:
    outcome = _train(settings, bert, params={"estimators": ["lrl1"]})
    assert outcome.best_estimator == "lrl1"
    with pytest.raises(ValidationError, match="estimators is given twice"):
        _train(settings, bert, estimators=["rf"], params={"estimators": ["lrl1"]})


@pytest.mark.parametrize(
    ("option", "value"),
    [("keep_columns", ["shop"]), ("entrypoint", "mod:fit")],
)
def test_options_a_text_task_cannot_take_are_refused(
    settings: Settings, bert: Path, option: str, value: object
) -> None:
    with pytest.raises(ValidationError, match=option) as refused:
        _train(settings, bert, **{option: value})
    assert "text" in str(refused.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [("estimators", ["rf"]), ("metric", "accuracy"), ("n_jobs", 1), ("max_model_mb", 5.0)],
)
def test_fine_tuning_refuses_the_search_options(
    settings: Settings, bert: Path, option: str, value: object
) -> None:
    with pytest.raises(ValidationError, match=f"{option}.*fine-tuning"):
        train_model(
            "reviews_snap",
            target="sentiment",
            task="text-classification",
            params={"method": "finetune", "text_column": "review"},
            settings=settings,
            **{option: value},  # type: ignore[arg-type]
        )
