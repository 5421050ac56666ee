"""``loopml runs package-mlflow``: make a model ``mlflow.sklearn.log_model`` stored
deployable, by packaging it here (the pickle is loaded on this machine, never the server)."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli._context import project_option, state
from loopml.cli._output import console


def package(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run that logged the MLflow model."),
    source: str = typer.Option("model", "--source", help="The MLflow model's folder."),
    dest: str = typer.Option("loopml-model", "--dest", help="The folder for loopml's package."),
    sample: Path | None = typer.Option(
        None, "--sample", help="A CSV of input rows; the model's input example by default."
    ),
    project: str = project_option("The run's project."),
) -> None:
    """Package a run's scikit-learn MLflow model as a loopml package on the same run.

    It loads the run's pickle in this process: do it only for runs you trust.
    """
    from loopml.sdk.mlflow import package_mlflow_model

    rows = None
    if sample is not None:
        import pandas as pd

        rows = pd.read_csv(sample)
    with state(ctx).client() as client:
        logged = package_mlflow_model(
            client, run_id, source=source, dest=dest, sample=rows, project=project
        )
    console.print(
        f"packaged {source} of run {run_id} as {logged.path} ({logged.format}); register it "
        f"with mlflow.register_model('runs:/{run_id}/{logged.path}', NAME)"
    )
