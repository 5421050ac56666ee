"""Plain MLflow tracking code on experiments: a name with a space, experiment tags, and a
``name LIKE`` search.

Usage: python experiments.py PREFIX ; prints one JSON object.
"""

import json
import sys

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

prefix = sys.argv[1]
client = MlflowClient()
out = {}
try:
    exp_id = mlflow.set_experiment(f"{prefix} churn model").experiment_id
    client.set_experiment_tag(exp_id, "team", "risk")
    mlflow.set_experiment_tag("owner", "ada")
    out["tags"] = {
        k: v for k, v in client.get_experiment(exp_id).tags.items() if not k.startswith("mlflow.")
    }
except MlflowException as exc:
    out["tags"] = exc.error_code
client.create_experiment(f"{prefix}-other")


def names(text):
    try:
        return sorted(e.name for e in client.search_experiments(filter_string=text))
    except MlflowException as exc:
        return exc.error_code


filters = {
    "like": f"name LIKE '{prefix}%'",
    "ilike": f"name ILIKE '{prefix.upper()}% CHURN%'",
    "not_equal": f"name != '{prefix}-other' and name LIKE '{prefix}%'",
    "tag": f"tags.team = 'risk' and name LIKE '{prefix}%'",
    "unsupported": "name > 'a'",
}
out.update({key: names(text) for key, text in filters.items()})
print(json.dumps(out))
