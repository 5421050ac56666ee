"""Plain MLflow code that loads a registered model back by alias and predicts.

Usage: python load_model.py MODEL ROWS_JSON ; prints one JSON object: the predictions, or
the error MLflow's client raised.
"""

import json
import sys

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException

name, rows = sys.argv[1:3]
try:
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
except MlflowException as exc:
    print(json.dumps({"refused": {"code": exc.error_code, "message": exc.message}}))
    sys.exit(0)
predictions = model.predict(pd.DataFrame(json.loads(rows)))
flavors = sorted(model.metadata.flavors)
print(json.dumps({"predictions": [float(p) for p in predictions], "flavors": flavors}))
