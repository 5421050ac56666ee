"""The MLflow routers; each is mounted under ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow``."""

from loopml.api.mlflow.routes import artifacts as artifacts
from loopml.api.mlflow.routes import logged_models as logged_models
from loopml.api.mlflow.routes import registry as registry
from loopml.api.mlflow.routes import tracking as tracking
