"""Where a deployment answers, and a ``curl`` line that works when pasted: ``loopml deploy``
prints them once the deployment is ready.

The example row is the first row of the input example packaged with the served version
(``input_example.json``), so the line sends every column the model takes, with real values.
"""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Any

from loopml.cli._output import console

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.core.deployments import Deployment


def predict_url(url: str, project: str, name: str) -> str:
    """The gateway's ``/predict`` of a deployment (the short form in project ``default``)."""
    prefix = "" if project == "default" else f"/projects/{project}"
    return f"{url.rstrip('/')}{prefix}/deployments/{name}/predict"


def feedback_path(project: str, name: str) -> str:
    """Where a deployment's labels go (``POST``, by ``inference_id``): the short form answers
    in project ``default`` only."""
    if project == "default":
        return f"/deployments/{name}/feedback"
    return f"/api/v1/projects/{project}/deployments/{name}/feedback"


def curl_line(url: str, row: dict[str, Any], token: str | None = None) -> str:
    """One line of shell that POSTs ``row`` to ``url`` as ``{"instances": [row]}``; with the
    CLI's ``token`` (authentication on), it sends that token as the CLI does, named by where
    it lives (``$LOOPML_TOKEN`` or ``loopml login``'s file), never printed."""
    from loopml.cli._token import shell_reference

    # A float as a person would type it: 12 significant digits drop binary noise
    # (0.9309000000000001 prints 0.9309), a change in the 13th digit at most.
    tidy = {k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in row.items()}
    body = json.dumps({"instances": [tidy]}, separators=(",", ":"))
    auth = f' -H "authorization: Bearer {shell_reference(token)}"' if token else ""
    return (
        f"curl -s {shlex.quote(url)} -H 'content-type: application/json'{auth} "
        f"-d {shlex.quote(body)}"
    )


def example_row(client: Client, deployment: Deployment) -> dict[str, Any] | None:
    """The first packaged example row of the version the deployment serves, if it has one."""
    from loopml.core.errors import LoopmlError

    serving = [r for r in deployment.revisions if deployment.traffic.get(r.number)]
    if not serving:
        return None
    revision = max(serving, key=lambda r: deployment.traffic[r.number])
    project = deployment.project
    try:
        version = client.models.get_version(revision.model, revision.version, project=project)
        logged = [
            m
            for m in client.runs.list_models(version.run_id, project=project)
            if m.id == version.logged_model_id
        ]
        if not logged:
            return None
        path = f"{logged[0].path}/input_example.json"
        raw = b"".join(client.runs.iter_artifact(version.run_id, path, project=project))
        rows = json.loads(raw)
    except (LoopmlError, ValueError):
        return None
    return rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else None


def show(client: Client, deployment: Deployment, token: str | None = None) -> None:
    """Print the deployment's URLs and, when an example row is known, a curl line (sending
    the CLI's ``token``, if it has one)."""
    url = predict_url(client.url, deployment.project, deployment.name)
    base = url.removesuffix("/predict")
    console.print(
        f"predict  {url}\n"
        f"V2       {base}/v2/models/{deployment.name}/infer\n"
        f"feedback {client.url.rstrip('/')}{feedback_path(deployment.project, deployment.name)}\n"
        f"status   loopml deployments show {deployment.name} -p {deployment.project}",
        highlight=False,
        soft_wrap=True,
    )
    row = example_row(client, deployment)
    if row is not None:
        console.print("try (one line):", highlight=False)
        print(curl_line(url, row, token), flush=True)
