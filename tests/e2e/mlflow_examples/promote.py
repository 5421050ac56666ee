"""Plain MLflow registry code: point ``champion`` at a version and read it back by alias.

Usage: python promote.py MODEL VERSION ; prints one JSON object.
"""

import json
import sys

from mlflow.tracking import MlflowClient

name, version = sys.argv[1:3]
client = MlflowClient()
client.set_registered_model_alias(name, "champion", version)
found = client.get_model_version_by_alias(name, "champion")
print(
    json.dumps(
        {
            "version": found.version,
            "run_id": found.run_id,
            "aliases": list(found.aliases),
        }
    )
)
