"""Plain MLflow 3 client code for logged models: create one, log its params, tags and files,
finalize it, find it, and try to register it.

Usage: python logged_models.py EXPERIMENT MODEL ; prints one JSON object.
"""

import json
import os
import sys
import tempfile

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

experiment, name = sys.argv[1:3]
client = MlflowClient()
mlflow.set_experiment(experiment)
with mlflow.start_run() as run:
    exp_id = run.info.experiment_id
    model = client.create_logged_model(
        exp_id, name="clf", source_run_id=run.info.run_id, params={"depth": "3"}
    )
    client.log_model_params(model.model_id, {"lr": "0.1"})
    client.set_logged_model_tags(model.model_id, {"team": "risk", "tmp": "x"})
    client.delete_logged_model_tag(model.model_id, "tmp")
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "MLmodel"), "w") as f:
            f.write("flavors:\n  python_function: {}\n")
        with open(os.path.join(tmp, "model.pkl"), "wb") as f:
            f.write(b"not really a pickle")
        client.log_model_artifacts(model.model_id, tmp)
    client.finalize_logged_model(model.model_id, "READY")
found = client.search_logged_models([exp_id], filter_string="name = 'clf'")
got = client.get_logged_model(model.model_id)
files = sorted(a.path for a in client.list_logged_model_artifacts(model.model_id))
try:
    mlflow.register_model(f"models:/{model.model_id}", name)
    refused = None
except MlflowException as exc:
    refused = {"code": exc.error_code, "message": exc.message}
print(
    json.dumps(
        {
            "found": [m.model_id for m in found],
            "model_id": model.model_id,
            "status": str(got.status),
            "params": got.params,
            "tags": {k: v for k, v in got.tags.items() if not k.startswith("mlflow.")},
            "source_run_id": got.source_run_id,
            "run_id": run.info.run_id,
            "files": files,
            "refused": refused,
        }
    )
)
