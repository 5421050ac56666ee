"""Plain MLflow 3 client code: log a metric for a logged model, log a packaged model's files
as that model, and register it by ``models:/<model_id>``.

Usage: python logged_model_metrics.py EXPERIMENT MODEL PACKAGE_DIR ; prints one JSON object.
"""

import json
import sys

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

experiment, name, package = sys.argv[1:4]
client = MlflowClient()
mlflow.set_experiment(experiment)
with mlflow.start_run() as run:
    model = client.create_logged_model(
        run.info.experiment_id, name="onnx-clf", source_run_id=run.info.run_id
    )
    mlflow.log_metric("acc", 0.75, step=0, model_id=model.model_id)
    mlflow.log_metric("acc", 0.875, step=1, model_id=model.model_id)
    client.log_model_artifacts(model.model_id, package)
    client.finalize_logged_model(model.model_id, "READY")
got = client.get_logged_model(model.model_id)
out = {
    "metrics": sorted([m.key, m.value, m.step] for m in got.metrics),
    "run_metrics": client.get_run(run.info.run_id).data.metrics,
}
try:
    version = mlflow.register_model(f"models:/{model.model_id}", name)
    out["registered"] = {"version": version.version, "status": version.status}
except MlflowException as exc:
    out["registered"] = {"code": exc.error_code, "message": exc.message}
print(json.dumps(out))
