"""Runs an MLflow example script with the public MLflow calls it makes recorded: each call
of an ``MlflowClient`` method or of a fluent tracking/registry function (``mlflow.<name>``)
that the script itself makes (not those MLflow makes inside another), with how it ended
(``ok`` or the error code). Run by the client's own interpreter; imports nothing of loopml.

Usage: python mlflow_record.py OUT_JSON SCRIPT [ARGS...] ; OUT_JSON gets
``{"public": [every public name of this client], "calls": [[name, outcome], ...]}``.
"""

import functools
import inspect
import json
import runpy
import sys
import threading

import mlflow
from mlflow.tracking import MlflowClient

# The fluent functions in scope: MLflow's tracking and registry ones (tracing, evaluation,
# system metrics and the like are not MLflow's tracking or registry API).
FLUENT_MODULES = ("mlflow.tracking.fluent", "mlflow.tracking._model_registry.fluent")

_depth = threading.local()
calls = []


def _recorded(label, fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        outer = getattr(_depth, "n", 0) == 0
        _depth.n = getattr(_depth, "n", 0) + 1
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if outer:
                calls.append([label, str(getattr(exc, "error_code", type(exc).__name__))])
            raise
        finally:
            _depth.n -= 1
        if outer:
            calls.append([label, "ok"])
        return result

    return call


def public_client_methods():
    """``MlflowClient``'s public methods (plain functions of the class)."""
    return sorted(
        name
        for name in dir(MlflowClient)
        if not name.startswith("_")
        and inspect.isfunction(inspect.getattr_static(MlflowClient, name))
    )


def public_fluent_functions():
    """``mlflow.<name>`` functions of the tracking and registry fluent modules."""
    return sorted(
        name
        for name in dir(mlflow)
        if not name.startswith("_")
        and inspect.isfunction(getattr(mlflow, name, None))
        and getattr(mlflow, name).__module__ in FLUENT_MODULES
    )


def main():
    out, script, *args = sys.argv[1:]
    methods, functions = public_client_methods(), public_fluent_functions()
    for name in methods:
        setattr(MlflowClient, name, _recorded(f"MlflowClient.{name}", getattr(MlflowClient, name)))
    for name in functions:
        setattr(mlflow, name, _recorded(f"mlflow.{name}", getattr(mlflow, name)))
    public = [f"MlflowClient.{n}" for n in methods] + [f"mlflow.{n}" for n in functions]
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        with open(out, "w") as f:
            json.dump({"version": mlflow.__version__, "public": public, "calls": calls}, f)


if __name__ == "__main__":
    main()
