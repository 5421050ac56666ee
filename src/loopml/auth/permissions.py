"""Every API route and what it needs: one entry per route, grouped by router module.

A route is ``(METHOD, path template)`` exactly as the app declares it. A test walks the
app's routes and fails on any route without an entry here, so a new route cannot ship
without a rule: add it to its module's list (or a new module's list).

Actions:

- ``PUBLIC``: anyone (health checks; the login itself, and a browser session's).
- ``WEBHOOK``: anyone, because the route checks its own secret (a trigger's webhook, a
  codeset's push webhook).
- ``USER``: any authenticated caller (who am I, my own tokens).
- ``READ`` / ``WRITE`` / ``ADMIN``: viewer / editor / admin in the route's project (the
  ``{project}`` path parameter, or ``{name}`` under ``/api/v1/projects/{name}``); the
  gateway's root paths (``/deployments/...``) act in the ``default`` project. MLflow's routes
  act in the ``{project}`` of their per-project prefix (``/mlflow/projects/{project}/...``),
  or at the root in the project the ``mlflow.project`` setting names.
- ``PLATFORM``: a platform admin (users, creating projects, garbage collection).

``resource`` says which resource a route acts on, for a token narrowed to one: a token
narrowed to ``deployment:churn-api`` may call only the routes whose rule names a deployment,
and only for ``churn-api``. The name is read where the ``Resource`` says (``Source``): a path
parameter (``DEPLOYMENT``: ``{name}``), the experiment of the run a path parameter names
(``RUN_EXPERIMENT``: ``{run_id}``, looked up in the store), or a field of the JSON body
(``BODY_EXPERIMENT``: a new run's ``experiment``). The last two are read only for a caller
whose token is narrowed to that kind of resource; any other caller pays nothing for them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from loopml.core.auth import Role
from loopml.core.mlflow_models import PROJECT_ROOT


class Action(enum.Enum):
    """What a route needs of its caller (see the module docstring)."""

    PUBLIC = "public"
    WEBHOOK = "webhook"
    USER = "user"
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    PLATFORM = "platform"

    @property
    def role(self) -> Role | None:
        """The project role the action needs, for the three project actions."""
        return {"read": Role.VIEWER, "write": Role.EDITOR, "admin": Role.ADMIN}.get(self.value)


class Source(enum.Enum):
    """Where a route's resource name is read (see the module docstring)."""

    PATH = "path"
    RUN = "run"
    BODY = "body"


@dataclass(frozen=True)
class Resource:
    """The resource a route acts on, as a narrowed token is matched against it.

    Attributes:
        kind: ``deployment``, ``experiment``, ``table`` or ``model``.
        param: the path parameter (``PATH``, ``RUN``) or JSON body field (``BODY``) to read.
        source: how ``param`` gives the resource's name.
    """

    kind: str
    param: str
    source: Source = Source.PATH


@dataclass(frozen=True)
class Rule:
    """What one route needs: an action, and the resource a narrowed token is matched on."""

    action: Action
    resource: Resource | None = None
    project_param: str = "project"


R, W, A = Action.READ, Action.WRITE, Action.ADMIN
DEPLOYMENT = Resource("deployment", "name")
EXPERIMENT = Resource("experiment", "name")
TABLE = Resource("table", "table")
MODEL = Resource("model", "model")
RUN_EXPERIMENT = Resource("experiment", "run_id", Source.RUN)
BODY_EXPERIMENT = Resource("experiment", "experiment", Source.BODY)
P = "/api/v1/projects/{project}"
RUN = P + "/runs/{run_id:run_id}"

# One list per router module: (method, path, action[, resource]).
_ROUTES: dict[str, list[tuple[str, str, Action] | tuple[str, str, Action, Resource]]] = {
    "health": [
        ("GET", "/api/v1/health", Action.PUBLIC),
        ("GET", "/api/v1/health/live", Action.PUBLIC),
        ("GET", "/api/v1/health/ready", Action.PUBLIC),
    ],
    "auth": [
        ("POST", "/api/v1/auth/login", Action.PUBLIC),
        ("POST", "/api/v1/auth/session", Action.PUBLIC),
        # Logging out is a state change made with the session: its CSRF token is checked.
        ("DELETE", "/api/v1/auth/session", Action.USER),
        ("GET", "/api/v1/auth/whoami", Action.USER),
        ("GET", "/api/v1/tokens", Action.USER),
        ("POST", "/api/v1/tokens", Action.USER),
        ("DELETE", "/api/v1/tokens/{token}", Action.USER),
        ("GET", "/api/v1/admin/tokens/{prefix}", Action.PLATFORM),
        ("DELETE", "/api/v1/admin/tokens/{prefix}", Action.PLATFORM),
        ("GET", "/api/v1/users", Action.PLATFORM),
        ("POST", "/api/v1/users", Action.PLATFORM),
        ("PATCH", "/api/v1/users/{user}", Action.PLATFORM),
        ("GET", P + "/members", A),
        ("PUT", P + "/members/{user}", A),
        ("DELETE", P + "/members/{user}", A),
    ],
    "projects": [
        ("GET", "/api/v1/projects", Action.USER),
        ("POST", "/api/v1/projects", Action.PLATFORM),
        ("GET", "/api/v1/projects/{name}", R),
        ("PATCH", "/api/v1/projects/{name}", A),
        ("DELETE", "/api/v1/projects/{name}", A),
    ],
    "events": [("GET", "/api/v1/events", Action.PLATFORM)],
    "logs": [("GET", "/api/v1/logs", Action.PLATFORM)],
    "artifacts": [
        ("GET", P + "/artifacts", R),
        ("GET", P + "/artifacts/{key:path}", R),
        ("PUT", P + "/artifacts/{key:path}", W),
        ("DELETE", P + "/artifacts/{key:path}", A),
    ],
    "datasets": [
        ("GET", P + "/datasets", R),
        ("POST", P + "/datasets", W),
        ("GET", P + "/datasets/{name}", R),
        ("DELETE", P + "/datasets/{name}", A),
        ("GET", P + "/datasets/{name}/versions", R),
        ("GET", P + "/datasets/{name}/versions/{version}", R),
        ("GET", P + "/datasets/{name}/versions/{version}/data", R),
        ("POST", P + "/datasets/{name}/versions/{version}/split", W),
    ],
    "deployments": [
        ("GET", P + "/deployments", R),
        ("POST", P + "/deployments", W),
        ("GET", P + "/deployments/{name}", R, DEPLOYMENT),
        ("PATCH", P + "/deployments/{name}", W, DEPLOYMENT),
        ("DELETE", P + "/deployments/{name}", A, DEPLOYMENT),
        ("GET", P + "/deployments/{name}/logs", R, DEPLOYMENT),
        ("GET", P + "/deployments/{name}/revisions", R, DEPLOYMENT),
        ("POST", P + "/deployments/{name}/rollback", W, DEPLOYMENT),
        ("POST", P + "/deployments/{name}/scale", W, DEPLOYMENT),
    ],
    "feedback": [
        ("POST", P + "/deployments/{name}/feedback", W, DEPLOYMENT),
        ("POST", "/deployments/{name}/feedback", W, DEPLOYMENT),
    ],
    "experiments": [
        ("GET", P + "/experiments", R),
        ("POST", P + "/experiments", W, Resource("experiment", "name", Source.BODY)),
        ("GET", P + "/experiments/{name}", R, EXPERIMENT),
    ],
    "gate": [
        ("GET", P + "/models/{model}/gate-policy", R, MODEL),
        ("PUT", P + "/models/{model}/gate-policy", A, MODEL),
        ("DELETE", P + "/models/{model}/gate-policy", A, MODEL),
        ("POST", P + "/models/{model}/versions/{version}/evaluate", W, MODEL),
        ("GET", P + "/models/{model}/versions/{version}/evaluations", R, MODEL),
        ("POST", P + "/models/{model}/versions/{version}/evaluations", W, MODEL),
        ("GET", P + "/models/{model}/versions/{version}/gate", R, MODEL),
        ("POST", P + "/models/{model}/versions/{version}/gate", W, MODEL),
    ],
    "models": [
        ("POST", "/api/v1/gc", Action.PLATFORM),
        ("GET", P + "/lineage", R),
        ("GET", P + "/model-refs/{ref:path}", R),
        ("GET", P + "/models", R),
        ("POST", P + "/models", W),
        ("GET", P + "/models/{model}", R, MODEL),
        ("PATCH", P + "/models/{model}", W, MODEL),
        ("DELETE", P + "/models/{model}", A, MODEL),
        ("PUT", P + "/models/{model}/aliases/{alias}", W, MODEL),
        ("DELETE", P + "/models/{model}/aliases/{alias}", W, MODEL),
        ("PUT", P + "/models/{model}/tags/{key}", W, MODEL),
        ("DELETE", P + "/models/{model}/tags/{key}", W, MODEL),
        ("GET", P + "/models/{model}/versions", R, MODEL),
        ("POST", P + "/models/{model}/versions", W, MODEL),
        ("GET", P + "/models/{model}/versions/{version}", R, MODEL),
        ("PATCH", P + "/models/{model}/versions/{version}", W, MODEL),
        ("DELETE", P + "/models/{model}/versions/{version}", A, MODEL),
        ("GET", P + "/models/{model}/versions/{version}/lineage", R, MODEL),
        ("PUT", P + "/models/{model}/versions/{version}/tags/{key}", W, MODEL),
        ("DELETE", P + "/models/{model}/versions/{version}/tags/{key}", W, MODEL),
    ],
    "pipelines": [
        ("GET", P + "/pipeline-runs", R),
        ("GET", P + "/pipeline-runs/{run_id}", R),
        ("POST", P + "/pipeline-runs/{run_id}/cancel", W),
        ("GET", P + "/pipeline-runs/{run_id}/steps/{step}/log", R),
        ("GET", P + "/pipelines", R),
        ("POST", P + "/pipelines", W),
        ("GET", P + "/pipelines/{name}", R),
        ("POST", P + "/pipelines/{name}/runs", W),
    ],
    "predictions": [("POST", P + "/predict-batch", W)],
    "runs": [
        ("POST", P + "/runs", W, BODY_EXPERIMENT),
        ("POST", P + "/runs/search", R),
        ("GET", RUN, R, RUN_EXPERIMENT),
        ("PATCH", RUN, W, RUN_EXPERIMENT),
        ("DELETE", RUN, A, RUN_EXPERIMENT),
        ("GET", RUN + "/artifacts", R, RUN_EXPERIMENT),
        ("GET", RUN + "/artifacts/{path:path}", R, RUN_EXPERIMENT),
        ("PUT", RUN + "/artifacts/{path:path}", W, RUN_EXPERIMENT),
        ("POST", RUN + "/heartbeat", W, RUN_EXPERIMENT),
        ("POST", RUN + "/log-batch", W, RUN_EXPERIMENT),
        ("GET", RUN + "/metric-history", R, RUN_EXPERIMENT),
        ("GET", RUN + "/models", R, RUN_EXPERIMENT),
        ("POST", RUN + "/models", W, RUN_EXPERIMENT),
    ],
    "schedules": [
        ("GET", P + "/schedules", R),
        ("POST", P + "/schedules", W),
        ("GET", P + "/schedules/{name}", R),
        ("PATCH", P + "/schedules/{name}", W),
        ("DELETE", P + "/schedules/{name}", A),
        ("GET", P + "/schedules/{name}/history", R),
    ],
    "sql": [("POST", P + "/sql", R)],
    "tables": [
        ("GET", P + "/tables", R),
        ("POST", P + "/tables", W),
        ("GET", P + "/tables/{table}", R, TABLE),
        ("DELETE", P + "/tables/{table}", A, TABLE),
        ("POST", P + "/tables/{table}/compact", W, TABLE),
        ("POST", P + "/tables/{table}/vacuum", A, TABLE),
        ("GET", P + "/tables/{table}/contract", R, TABLE),
        ("PUT", P + "/tables/{table}/contract", A, TABLE),
        ("DELETE", P + "/tables/{table}/contract", A, TABLE),
        ("POST", P + "/tables/{table}/files", W, TABLE),
        ("POST", P + "/tables/{table}/records", W, TABLE),
        ("GET", P + "/tables/{table}/head", R, TABLE),
        ("GET", P + "/tables/{table}/history", R, TABLE),
        ("GET", P + "/tables/{table}/reports", R, TABLE),
    ],
    "monitor": [
        ("GET", P + "/deployments/{name}/monitor", R, DEPLOYMENT),
        ("GET", P + "/deployments/{name}/windows", R, DEPLOYMENT),
        ("GET", P + "/deployments/{name}/replicas", R, DEPLOYMENT),
        ("GET", P + "/models/{model}/versions/{version}/reference", R, MODEL),
        ("PUT", P + "/models/{model}/versions/{version}/reference", W, MODEL),
        ("POST", P + "/alerts", W),
        ("GET", P + "/alerts", R),
        ("GET", P + "/alerts/{rule}", R),
        ("DELETE", P + "/alerts/{rule}", A),
        ("POST", P + "/alerts/{rule}/silence", W),
        ("GET", P + "/alerts/{rule}/deliveries", R),
    ],
    "features": [
        ("POST", P + "/features/views", W),
        ("GET", P + "/features/views", R),
        ("GET", P + "/features/views/{view}", R),
        ("POST", P + "/features/views/{view}/materialize", W),
        ("GET", P + "/features/views/{view}/skew", R),
        ("POST", P + "/features/training-sets", W),
        ("GET", P + "/features/{view:feature_view}", R),
        ("POST", P + "/features/{view:feature_view}/search", R),
    ],
    "streams": [
        ("GET", P + "/streams", R),
        ("POST", P + "/streams", W),
        ("POST", P + "/streams/apply", W),
        ("GET", P + "/streams/{name}", R),
        ("DELETE", P + "/streams/{name}", A),
        ("POST", P + "/streams/{name}/pause", W),
        ("POST", P + "/streams/{name}/resume", W),
    ],
    "transforms": [
        ("GET", P + "/transforms", R),
        ("GET", P + "/transforms/lineage", R),
        ("GET", P + "/transforms/{name}", R),
        ("PUT", P + "/transforms/{name}", W),
        ("DELETE", P + "/transforms/{name}", A),
        ("POST", P + "/transforms/{name}/apply", W),
        ("GET", P + "/transforms/{name}/runs", R),
    ],
    "triggers": [
        ("GET", P + "/triggers", R),
        ("POST", P + "/triggers", W),
        ("GET", P + "/triggers/{name}", R),
        ("PATCH", P + "/triggers/{name}", W),
        ("DELETE", P + "/triggers/{name}", A),
        ("GET", P + "/triggers/{name}/history", R),
        ("POST", "/api/v1/triggers/{trigger_id}/fire", Action.WEBHOOK),
    ],
    "codesets": [
        ("GET", P + "/codesets", R),
        ("GET", P + "/codesets/{name}", R),
        ("POST", P + "/codesets/{name}/versions", W),
        ("GET", P + "/codesets/{name}/versions", R),
        ("GET", P + "/codesets/{name}/versions/{version}", R),
        ("GET", P + "/codesets/{name}/versions/{version}/archive", R),
        # It names a folder on the server the webhook then reads: an admin's act.
        ("PUT", P + "/codesets/{name}/webhook", A),
        ("DELETE", P + "/codesets/{name}/webhook", A),
        ("POST", "/api/v1/codesets/{codeset_id}/push", Action.WEBHOOK),
    ],
}


def _table() -> dict[tuple[str, str], Rule]:
    table: dict[tuple[str, str], Rule] = {}
    for entries in _ROUTES.values():
        for method, path, action, *resource in entries:
            key = (method, path)
            if key in table:
                raise ValueError(f"two permission entries for {method} {path}")
            project_param = "name" if path.startswith("/api/v1/projects/{name}") else "project"
            table[key] = Rule(action, resource[0] if resource else None, project_param)
    return table


PERMISSIONS: dict[tuple[str, str], Rule] = _table()
"""``(method, path template)`` -> ``Rule``: every route of the API."""


MLFLOW_PREFIXES = (
    "/api/2.0/mlflow",
    "/ajax-api/2.0/mlflow",
    "/api/3.0/mlflow",
    "/ajax-api/3.0/mlflow",
)
"""MLflow's REST API (``/api/2.0/mlflow/...``, ``/ajax-api/...``, ``.../mlflow-artifacts``,
and MLflow 3's ``/api/3.0/mlflow/...``, which loopml answers ``ENDPOINT_NOT_FOUND``)."""
MLFLOW_PROJECT_ROOT = PROJECT_ROOT
"""A project's own MLflow tracking URI: the same routes under it act in ``{project}``."""
MLFLOW_PROJECT = "<mlflow.project>"
"""The ``project_param`` of MLflow's root routes: they act in the project the
``mlflow.project`` setting names (MLflow has no projects in its paths)."""


def _mlflow_rule(method: str, path: str, project_param: str) -> Rule:
    """MLflow's routes, by method: reads (``GET``, and its ``POST .../search`` calls) need a
    viewer, changes an editor, ``DELETE`` (artifacts) an admin."""
    if method == "DELETE":
        action = Action.ADMIN
    elif method == "GET" or path.endswith("/search"):
        action = Action.READ
    else:
        action = Action.WRITE
    return Rule(action, None, project_param)


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route (``HEAD`` is read as ``GET``), or ``None`` when it has none."""
    method = "GET" if method == "HEAD" else method
    if path.startswith(MLFLOW_PREFIXES):
        return _mlflow_rule(method, path, MLFLOW_PROJECT)
    if path.startswith(MLFLOW_PROJECT_ROOT):
        rest = path.removeprefix(MLFLOW_PROJECT_ROOT)
        if rest.startswith(MLFLOW_PREFIXES):
            return _mlflow_rule(method, rest, "project")
    return PERMISSIONS.get((method, path))
