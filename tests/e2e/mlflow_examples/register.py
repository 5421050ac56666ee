"""Plain MLflow registry code: register a run's model, point an alias at it, read it back.

Usage: python register.py RUN_ID PATH MODEL ; prints one JSON object.
"""

import json
import sys

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

run_id, path, name = sys.argv[1:4]
client = MlflowClient()
version = mlflow.register_model(f"runs:/{run_id}/{path}", name)
try:
    client.set_registered_model_alias(name, "champion", version.version)
    refused = None
except MlflowException as exc:
    refused = {"code": exc.error_code, "message": exc.message}
print(json.dumps({"version": version.version, "status": version.status, "refused": refused}))
