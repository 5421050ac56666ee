"""Plain MLflow tracking code: resume a finished run, then find runs by their name (the
``mlflow.runName`` tag, ``attributes.run_name``) and by a system tag.

Usage: python resume_search.py EXPERIMENT ; prints one JSON object.
"""

import json
import sys

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

experiment = sys.argv[1]
client = MlflowClient()
exp_id = mlflow.set_experiment(experiment).experiment_id
with mlflow.start_run(run_name="r007") as run:
    mlflow.log_metric("loss", 0.5, step=0)
with mlflow.start_run(run_name="r008"):
    mlflow.set_tag("team", "risk")
out = {}
try:
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_metric("loss", 0.25, step=1)
    out["resumed"] = client.get_run(run.info.run_id).info.status
except MlflowException as exc:
    out["resumed"] = exc.error_code
out["history"] = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]


def names(text):
    try:
        return sorted(r.info.run_name for r in client.search_runs([exp_id], text))
    except MlflowException as exc:
        return exc.error_code


filters = {
    "tag": "tags.mlflow.runName = 'r007'",
    "tag_quoted": "tags.`mlflow.runName` != 'r007'",
    "attribute": "attributes.run_name = 'r008'",
    "like": "attributes.run_name LIKE 'r00%'",
    "ilike": "run_name ILIKE 'R007'",
    "system_tag": "tags.mlflow.source.type = 'LOCAL' and tags.team = 'risk'",
    "unsupported": "attributes.run_name > 'r'",
}
out.update({key: names(text) for key, text in filters.items()})
print(json.dumps(out))
