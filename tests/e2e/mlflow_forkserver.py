"""Runs MLflow example scripts in processes forked from one that has imported MLflow once.

Importing MLflow with pandas and scikit-learn takes 6 to 10 s of CPU on the test machine,
and the MLflow tests run about a hundred scripts: started afresh, half of those tests' time
was the import. This server imports them once, then, for each request, forks a child that
runs the script as a new interpreter would: its own ``sys.argv``, environment, working
folder, stdin from ``/dev/null``, stdout and stderr to the files named, and the interpreter's
normal exit (MLflow's ``atexit`` handlers run, as they would). Each child starts from the
state the import left, never from another script's: nothing a script does reaches the next.

Run by the client's own interpreter; imports nothing of loopml. Protocol, one JSON object a
line: a request on stdin, ``{"argv": [...], "env": {...}, "cwd": ..., "stdout": PATH,
"stderr": PATH}``; on stdout ``{"pid": N}`` once forked, then ``{"returncode": N}``.
"""

import json
import os
import runpy
import sys
import traceback

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy
import pandas
import sklearn.linear_model
from mlflow.tracking import MlflowClient

# What the example scripts and the recorder import, imported once, for every child.
PRELOADED = (mlflow, mlflow.pyfunc, mlflow.sklearn, numpy, pandas, sklearn.linear_model)
PRELOADED_CLIENT = MlflowClient


def _child(request):
    """Become the script's process; never returns (the interpreter exits as a script's)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, fd)
        os.close(out)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    sys.exit(0)


def main():
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
