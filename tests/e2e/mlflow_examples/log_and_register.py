"""Plain MLflow code that logs a scikit-learn model and registers it in the same call
(``registered_model_name``), then registers it again with ``create_model_version``; the
client waits while the server packages it (PENDING_REGISTRATION).

Usage: python log_and_register.py EXPERIMENT MODEL ROWS_JSON ; prints one JSON object.
"""

import json
import sys
import time

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression

experiment, name, rows = sys.argv[1:4]
mlflow.set_experiment(experiment)
frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
with mlflow.start_run() as run:
    model = LogisticRegression().fit(frame, (frame["a"] > 20).astype(int))
    mlflow.sklearn.log_model(
        model, "model", input_example=frame.head(5), registered_model_name=name
    )
client = MlflowClient()
first = client.get_model_version(name, "1")
# runs:/<run>/model: MLflow 2 keeps the model in the run's folder, MLflow 3 apart from the
# run (as models:/<id>), which the server resolves by the run and the model's name.
source = f"runs:/{run.info.run_id}/model"
second = client.create_model_version(name, source=source, run_id=run.info.run_id)
for _ in range(600):  # MLflow 2's create_model_version does not wait; poll as it would
    if second.status != "PENDING_REGISTRATION":
        break
    time.sleep(0.5)
    second = client.get_model_version(name, second.version)
print(
    json.dumps(
        {
            "run_id": run.info.run_id,
            "statuses": [first.status, second.status],
            "predictions": [float(p) for p in model.predict(pd.DataFrame(json.loads(rows)))],
        }
    )
)
