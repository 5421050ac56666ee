"""Plain MLflow code that trains a scikit-learn model and logs it with its input example.

Usage: python log_sklearn.py EXPERIMENT ; prints one JSON object.
"""

import json
import sys

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

mlflow.set_experiment(sys.argv[1])
frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
with mlflow.start_run() as run:
    model = LogisticRegression().fit(frame, (frame["a"] > 20).astype(int))
    info = mlflow.sklearn.log_model(model, "model", input_example=frame.head(5))
    print(json.dumps({"run_id": run.info.run_id, "model_uri": info.model_uri}))
