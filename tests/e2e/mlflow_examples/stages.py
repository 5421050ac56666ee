"""Plain MLflow 2 registry code with stages: move a version to a stage and read the latest
version of each stage.

Usage: python stages.py MODEL VERSION STAGE ; prints one JSON object.
"""

import json
import sys

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

name, version, stage = sys.argv[1:4]
client = MlflowClient()
out = {}
try:
    moved = client.transition_model_version_stage(name, version, stage)
    out["stage"] = moved.current_stage
except MlflowException as exc:
    out["refused"] = {"code": exc.error_code, "message": exc.message}
out["got"] = client.get_model_version(name, version).current_stage
out["latest"] = {
    s: [v.version for v in client.get_latest_versions(name, stages=[s])]
    for s in ("None", "Staging", "Production", "Archived")
}
out["aliases"] = sorted(client.get_model_version(name, version).aliases)
print(json.dumps(out))
