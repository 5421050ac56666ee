"""Plain MLflow registry code through the calls the other scripts leave out: a registered
model's lifecycle, version updates, tags and aliases removed, a copy, the download URI, and
the fluent searches.

Usage: python registry_tour.py RUN_ID PATH PREFIX ; prints one JSON object.
"""

import json
import sys

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

run_id, path, prefix = sys.argv[1:4]
client = MlflowClient()
three = mlflow.__version__.startswith("3.")
name, copy = f"{prefix}-tour", f"{prefix}-copy"
out = {}

client.create_registered_model(name, tags={"team": "risk", "tmp": "x"}, description="first")
client.update_registered_model(name, description="second")
client.delete_registered_model_tag(name, "tmp")
for _ in range(2):
    mlflow.register_model(f"runs:/{run_id}/{path}", name)
client.update_model_version(name, "1", description="v1")
client.set_model_version_tag(name, "1", "tmp", "x")
client.delete_model_version_tag(name, "1", "tmp")
if three:
    mlflow.set_model_version_tag(name, "1", "checked", "yes")
else:
    client.set_model_version_tag(name, "1", "checked", "yes")
client.set_registered_model_alias(name, "candidate", "2")
client.delete_registered_model_alias(name, "candidate")
got = client.get_registered_model(name)
version = client.get_model_version(name, "1")
out["model"] = {
    "description": got.description,
    "tags": got.tags,
    "aliases": dict(got.aliases),
    "version_description": version.description,
    "version_tags": version.tags,
}
try:
    copied = client.copy_model_version(f"models:/{name}/1", copy)
    out["copied"] = [copied.name, copied.version, copied.run_id == run_id]
except MlflowException as exc:
    out["copied"] = exc.error_code
out["download_uri"] = bool(client.get_model_version_download_uri(name, "1"))
out["fluent"] = {
    "models": [
        m.name for m in mlflow.search_registered_models(filter_string=f"name LIKE '{prefix}-%'")
    ],
    "versions": sorted(
        v.version for v in mlflow.search_model_versions(filter_string=f"name = '{name}'")
    ),
}
client.delete_model_version(name, "2")
out["after_delete"] = [v.version for v in client.search_model_versions(f"name = '{name}'")]
client.delete_registered_model(name)
try:
    client.get_registered_model(name)
    out["deleted"] = None
except MlflowException as exc:
    out["deleted"] = exc.error_code
print(json.dumps(out))
