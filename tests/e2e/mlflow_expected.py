"""What the MLflow example scripts (``mlflow_examples/``) must print, checked the same way
against loopml (``test_mlflow_client.py``) and against MLflow's own server
(``test_mlflow_reference.py``), so the expectations themselves are MLflow's: an expectation
MLflow's server does not meet is a wrong test, not a loopml feature.

Where loopml differs on purpose (the gate on ``champion``/Production, stages as aliases, one
version a stage), each test says so itself; docs/mlflow.md lists those differences.
"""

from __future__ import annotations


def check_tracking(seen: dict[str, object], runs: list[dict[str, object]]) -> None:
    """``inspect_runs.py`` after two ``track.py`` runs (lr 0.1, then 0.3)."""
    assert seen["ids"] == [runs[0]["run_id"], runs[1]["run_id"]]
    assert seen["acc"] == [0.9, 0.7]
    assert seen["params"] == {"lr": "0.1", "depth": "3", "model": "gbm"}
    assert seen["tags"] == {"team": "risk", "stage": "dev", "data": "v1"}
    assert seen["run_name"] == "lr-0.1"
    assert seen["history"] == [[step, 0.1 / (step + 1)] for step in range(5)]
    assert seen["top"] == [
        ["config", True],
        ["hello.txt", False],
        ["notes.txt", False],
        ["reports", True],
    ]
    assert seen["nested"] == [["reports/a.csv", False], ["reports/deep", True]]
    assert seen["downloaded"] == ["a.csv", "deep/b.csv"]
    assert seen["notes"] == "lr=0.1\n"
    assert seen["refused"] is None  # params.model LIKE 'g%' is answered
    assert seen["deleted_hidden"]
    assert seen["restored"]
    assert seen["missing"] == "RESOURCE_DOES_NOT_EXIST"


def check_resume(seen: dict[str, object]) -> None:
    """``resume_search.py``: a finished run resumed, runs found by name."""
    assert seen["resumed"] == "FINISHED"
    assert seen["history"] == [0.5, 0.25]
    assert seen["tag"] == ["r007"]
    assert seen["tag_quoted"] == ["r008"]
    assert seen["attribute"] == ["r008"]
    assert seen["like"] == ["r007", "r008"]
    assert seen["ilike"] == ["r007"]
    assert seen["system_tag"] == ["r008"]
    assert seen["unsupported"] == "INVALID_PARAMETER_VALUE"


def check_experiments(seen: dict[str, object], prefix: str) -> None:
    """``experiments.py PREFIX``: names with spaces, tags, LIKE."""
    assert seen["tags"] == {"team": "risk", "owner": "ada"}
    assert seen["like"] == [f"{prefix} churn model", f"{prefix}-other"]
    assert seen["ilike"] == [f"{prefix} churn model"]
    assert seen["not_equal"] == [f"{prefix} churn model"]
    assert seen["tag"] == [f"{prefix} churn model"]
    assert seen["unsupported"] == "INVALID_PARAMETER_VALUE"


def check_registry_search(seen: dict[str, object], prefix: str, *, source: bool = True) -> None:
    """``registry_search.py RUN PATH PREFIX``: the registry's filter grammar and a rename.

    Args:
        source: the versions' sources end with the run's PATH. MLflow 3's client registers
            a model it logged as ``models:/<model_id>``, so on MLflow's server the
            ``source_path LIKE '%/PATH'`` search finds none of them.
    """
    churn, fraud = f"{prefix}-churn", f"{prefix}-fraud"
    assert seen["all"] == [churn, fraud]
    assert seen["paged"] == [[churn], [fraud]]
    assert seen["models"] == {
        "name": [churn],
        "like": [churn, fraud],
        "ilike": [fraud],
        "tag": [churn],
        "tag_ne": [churn],
        "order": [fraud, churn],
        "unsupported": "INVALID_PARAMETER_VALUE",
    }
    every = [f"{churn}/1", f"{churn}/2", f"{fraud}/1"]
    assert seen["versions"] == {
        "name": [f"{churn}/1", f"{churn}/2"],
        "run_id": every,
        "tag": [f"{churn}/2"],
        "source": every if source else [],
        "number": [f"{churn}/2"],
        "unsupported": "INVALID_PARAMETER_VALUE",
    }
    assert seen["renamed"] == [f"{prefix}-fraud2", f"{prefix}-fraud2"]


def check_tracking_tour(seen: dict[str, object], prefix: str, *, three: bool) -> None:
    """``tracking_tour.py PREFIX``: the client's own run calls, experiments' lifecycle,
    nested runs, inputs, tables, streams and (MLflow 3) logged models the fluent way."""
    assert seen["experiment"] == {
        "name": f"{prefix}-b",
        "by_name": True,
        "tags": ["kind", "owner"],
        "found": [f"{prefix}-b"],
    }
    artifacts = ["copied", "d.json", "files", "t.txt", "table.json"]
    assert seen["client_run"] == {
        "name": "client-run-2",
        "status": "FINISHED",
        "params": {"lr": "0.1", "depth": "3"},
        "metrics": {"loss": 0.25, "acc": 0.9},
        "tags": ["stage", "team"],
        "inputs": ["frame"],
        "artifacts": sorted([*artifacts, "stream.bin"]) if three else artifacts,
        "table": [1, 2],
    }
    assert seen["by_time"] == seen["by_time_expected"]
    assert seen["nested"] == {
        "parent": True,
        "fluent_parent": True,
        "last": True,
        "child_inputs": ["frame2", "frame3"] if three else ["frame2"],
        "table": [3],
        "deleted_hidden": True,
        "found": ["child"],
    }
    if three:
        assert seen["logged"] == {
            "params": {"k": "1", "lr": "0.2"},
            "tags": ["team"],
            "status": "READY",
            "last": True,
            "found": True,
            "external_deleted": True,
            "outputs": True,
            "files": ["weights.txt"],
        }


def check_registry_tour(seen: dict[str, object], prefix: str) -> None:
    """``registry_tour.py RUN PATH PREFIX``: a registered model's lifecycle, version updates,
    tags and aliases removed, a copy, the download URI and the fluent searches."""
    assert seen["model"] == {
        "description": "second",
        "tags": {"team": "risk"},
        "aliases": {},
        "version_description": "v1",
        "version_tags": {"checked": "yes"},
    }
    assert seen["copied"] == [f"{prefix}-copy", "1", True]
    assert seen["download_uri"] is True
    assert seen["fluent"] == {
        "models": [f"{prefix}-copy", f"{prefix}-tour"],
        "versions": ["1", "2"],
    }
    assert seen["after_delete"] == ["1"]
    assert seen["deleted"] == "RESOURCE_DOES_NOT_EXIST"
