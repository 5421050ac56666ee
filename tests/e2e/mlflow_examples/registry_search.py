"""Plain MLflow registry code: register two models from a run's model, tag them, search
registered models and versions with MLflow's filter grammar, and rename one.

Usage: python registry_search.py RUN_ID PATH PREFIX ; prints one JSON object.
"""

import json
import sys

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

run_id, path, prefix = sys.argv[1:4]
client = MlflowClient()
first, second = f"{prefix}-churn", f"{prefix}-fraud"
for name in (first, second, first):
    mlflow.register_model(f"runs:/{run_id}/{path}", name)
client.set_registered_model_tag(first, "team", "risk")
client.set_model_version_tag(first, "2", "validated", "yes")
out = {}


def models(text=None, **kwargs):
    try:
        return [m.name for m in client.search_registered_models(text, **kwargs)]
    except MlflowException as exc:
        return exc.error_code


def versions(text):
    try:
        found = client.search_model_versions(text)
        return sorted(f"{v.name}/{v.version}" for v in found if v.name.startswith(prefix))
    except MlflowException as exc:
        return exc.error_code


out["all"] = [name for name in models() if name.startswith(prefix)]
try:
    page = client.search_registered_models(f"name LIKE '{prefix}%'", max_results=1)
    rest = client.search_registered_models(
        f"name LIKE '{prefix}%'", max_results=1, page_token=page.token
    )
    out["paged"] = [[m.name for m in page], [m.name for m in rest]]
except MlflowException as exc:
    out["paged"] = exc.error_code
out["models"] = {
    "name": models(f"name = '{first}'"),
    "like": models(f"name LIKE '{prefix}-%'"),
    "ilike": models(f"name ILIKE '{prefix.upper()}-F%'"),
    "tag": models(f"name LIKE '{prefix}%' AND tags.team = 'risk'"),
    "tag_ne": models(f"name LIKE '{prefix}%' and tag.`team` != 'ops'"),
    "order": models(f"name LIKE '{prefix}%'", order_by=["name DESC"]),
    "unsupported": models(f"run_id = '{run_id}'"),
}
out["versions"] = {
    "name": versions(f"name = '{first}'"),
    "run_id": versions(f"run_id = '{run_id}'"),
    "tag": versions(f"name = '{first}' AND tags.validated = 'yes'"),
    "source": versions(f"name LIKE '{prefix}%' AND source_path LIKE '%/{path}'"),
    "number": versions(f"name = '{first}' AND version_number > 1"),
    "unsupported": versions("current_stage = 'None'"),
}
try:
    client.rename_registered_model(second, f"{prefix}-fraud2")
    renamed = client.get_registered_model(f"{prefix}-fraud2")
    out["renamed"] = [renamed.name, client.get_model_version(f"{prefix}-fraud2", "1").name]
except MlflowException as exc:
    out["renamed"] = exc.error_code
print(json.dumps(out))
