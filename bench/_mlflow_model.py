"""Save the serving benchmark's model as an MLflow model, for ``mlflow models serve``.

Run with an interpreter that has mlflow: ``python bench/_mlflow_model.py DEST``. It fits
the same forest as ``bench/serving.py`` (same data, parameters and seed, so the same trees)
and writes it with ``mlflow.sklearn.save_model``, with an input example for the signature.
It is a separate script so that mlflow (whose pins, pyarrow among them, differ from
loopml's) can live in its own virtual environment.
"""

from __future__ import annotations

import sys

import mlflow.sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier


def main(dest: str) -> None:
    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1)
    model.fit(frame, target)
    # mlflow 3 saves with skops and asks for the tree type to be trusted: this process made
    # the file itself.
    mlflow.sklearn.save_model(
        model,
        dest,
        input_example=frame.head(5),
        skops_trusted_types=["sklearn.tree._tree.Tree"],
    )


if __name__ == "__main__":
    main(sys.argv[1])
