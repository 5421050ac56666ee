"""Plain MLflow client code reading back what track.py logged.

Usage: python inspect_runs.py EXPERIMENT ; prints one JSON object.
"""

import json
import os
import sys
import tempfile

from mlflow.tracking import MlflowClient

client = MlflowClient()
experiment = client.get_experiment_by_name(sys.argv[1])
found = client.search_runs(
    experiment_ids=[experiment.experiment_id],
    filter_string="metrics.acc > 0.5 and params.model = 'gbm' and attributes.status = 'FINISHED'",
    order_by=["metrics.acc DESC"],
)
first = found[0]
run_id = first.info.run_id
history = client.get_metric_history(run_id, "loss")
top = client.list_artifacts(run_id)
nested = client.list_artifacts(run_id, "reports")
with tempfile.TemporaryDirectory() as tmp:
    local = client.download_artifacts(run_id, "reports", tmp)
    downloaded = sorted(
        os.path.relpath(os.path.join(root, f), local)
        for root, _, files in os.walk(local)
        for f in files
    )
    with open(client.download_artifacts(run_id, "notes.txt", tmp)) as f:
        notes = f.read()
try:
    client.search_runs([experiment.experiment_id], "params.model LIKE 'g%'")
    refused = None
except Exception as exc:
    refused = getattr(exc, "error_code", type(exc).__name__)
client.delete_run(run_id)
deleted = [r.info.run_id for r in client.search_runs([experiment.experiment_id])]
client.restore_run(run_id)
restored = [r.info.run_id for r in client.search_runs([experiment.experiment_id])]
try:
    client.get_run("0" * 32)
    missing = None
except Exception as exc:
    missing = getattr(exc, "error_code", type(exc).__name__)
print(
    json.dumps(
        {
            "ids": [r.info.run_id for r in found],
            "acc": [r.data.metrics["acc"] for r in found],
            "params": first.data.params,
            "tags": {k: v for k, v in first.data.tags.items() if not k.startswith("mlflow.")},
            "run_name": first.info.run_name,
            "history": [(m.step, m.value) for m in history],
            "top": sorted((a.path, a.is_dir) for a in top),
            "nested": sorted((a.path, a.is_dir) for a in nested),
            "downloaded": downloaded,
            "notes": notes,
            "refused": refused,
            "deleted_hidden": run_id not in deleted,
            "restored": run_id in restored,
            "missing": missing,
        }
    )
)
