"""Plain MLflow tracking code, as a team would have it: nothing here knows about loopml.

Usage: python track.py EXPERIMENT LR ; prints the run id.
"""

import json
import os
import sys
import tempfile

import mlflow

experiment, lr = sys.argv[1], float(sys.argv[2])
mlflow.set_experiment(experiment)
with mlflow.start_run(run_name=f"lr-{lr}") as run:
    mlflow.log_param("lr", lr)
    mlflow.log_params({"depth": 3, "model": "gbm"})
    for step in range(5):
        mlflow.log_metric("loss", lr / (step + 1), step=step)
    mlflow.log_metrics({"acc": 1 - lr, "f1": 0.5})
    mlflow.set_tag("team", "risk")
    mlflow.set_tags({"stage": "dev", "data": "v1"})
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "notes.txt"), "w") as f:
            f.write(f"lr={lr}\n")
        mlflow.log_artifact(os.path.join(tmp, "notes.txt"))
        os.makedirs(os.path.join(tmp, "plots", "deep"))
        for name in ("plots/a.csv", "plots/deep/b.csv"):
            with open(os.path.join(tmp, name), "w") as f:
                f.write("x,y\n1,2\n")
        mlflow.log_artifacts(os.path.join(tmp, "plots"), artifact_path="reports")
    mlflow.log_dict({"lr": lr}, "config/params.json")
    mlflow.log_text("hello", "hello.txt")
    print(json.dumps({"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}))
