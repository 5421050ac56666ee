"""The compatibility suite covers the clients' whole public tracking and registry API: the
inventory (``mlflow_inventory.py``) is checked against each pinned client's real public
names, and the two tour scripts run the calls the other scripts leave out against a real
``loopml up`` (``test_mlflow_reference.py`` runs them against MLflow's own server)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from .conftest import RunningServer
from .mlflow_expected import check_registry_tour, check_tracking_tour
from .mlflow_inventory import CLIENT_SIDE, COVERED, SAME_CALLS, UNSUPPORTED, listed
from .test_mlflow_client import (
    EXAMPLES,
    RECORDER,
    _script,
    _version,
    mlflow_python,  # noqa: F401 (the clients' fixture, shared)
    server,  # noqa: F401 (the module's loopml server)
)

pytestmark = [pytest.mark.e2e, pytest.mark.mlflow, pytest.mark.timeout(420)]

DOCS = Path(__file__).parents[2] / "docs" / "mlflow.md"
TESTS = [Path(__file__).parent / f"test_mlflow_{n}.py" for n in ("client", "reference")]

_PUBLIC = """
import json, runpy, sys
names = runpy.run_path(sys.argv[1], run_name="inventory")
methods, functions = names["public_client_methods"](), names["public_fluent_functions"]()
print(json.dumps(["MlflowClient." + n for n in methods] + ["mlflow." + n for n in functions]))
"""


def _public(python: Path) -> list[str]:
    """The client's public tracking and registry names, as the recorder wraps them."""
    done = subprocess.run(
        [str(python), "-c", _PUBLIC, str(RECORDER)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names: list[str] = json.loads(done.stdout)
    return names


def _unsupported_rows() -> list[str]:
    """The first cells of docs/mlflow.md's "What is not supported" table."""
    text = DOCS.read_text()
    section = text[text.index("## What is not supported") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return [line.split("|")[1] for line in section.splitlines() if line.startswith("| ")]


def _called_names(script: Path) -> set[str]:
    """The attribute names a script uses (``client.x``, ``mlflow.x``)."""
    tree = ast.parse(script.read_text())
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}


def test_the_inventory_lists_every_public_call_of_the_client(
    mlflow_python: Path,  # noqa: F811
) -> None:
    """Every public name of this client is in exactly one list, and what each list says
    holds: the script exists, is run by the suite and calls it; the docs hold the row."""
    public = _public(mlflow_python)
    assert len(public) > 100  # introspection found the API, not an empty module
    twice = [name for name, count in Counter(listed()).items() if count > 1]
    assert not twice, f"listed more than once: {twice}"
    missing = sorted(set(public) - set(listed()))
    assert not missing, (
        f"mlflow {_version(mlflow_python)} has public calls the inventory does not list "
        f"(tests/e2e/mlflow_inventory.py): {missing}"
    )
    suite = "".join(path.read_text() for path in TESTS) + Path(__file__).read_text()
    for name, script in COVERED.items():
        path = EXAMPLES / script
        assert path.is_file(), f"{name}: no script {script}"
        assert name.rpartition(".")[2] in _called_names(path), f"{script} never calls {name}"
        assert f'"{script}"' in suite, f"{script} ({name}) is run by no test"
    for name, (target, _) in SAME_CALLS.items():
        assert target in COVERED, f"{name} answers through {target}, which is not covered"
    rows = _unsupported_rows()
    for name, row in UNSUPPORTED.items():
        assert any(row in cell for cell in rows), f"{name}: no row {row!r} in {DOCS.name}"
    assert all(reason.strip() for reason in CLIENT_SIDE.values())


def test_every_listed_name_is_a_name_of_a_pinned_client(
    request: pytest.FixtureRequest,
) -> None:
    """No stale entry: each listed name is public in the 2.x or the 3.x client."""
    from .conftest import mlflow_cache_folder
    from .test_mlflow_client import CLIENTS, EXTRAS, _venv

    cache = mlflow_cache_folder(request.config)
    known: set[str] = set()
    for version in CLIENTS.values():
        python = _venv(cache, version, (f"mlflow-skinny=={version}", *EXTRAS))
        known |= set(_public(python))
    stale = sorted(set(listed()) - known)
    assert not stale, f"listed but public in no pinned client: {stale}"
    assert not [n for n in listed() if not re.fullmatch(r"(MlflowClient|mlflow)\.\w+", n)]


def test_the_calls_no_other_script_makes_work_on_loopml(
    mlflow_python: Path,  # noqa: F811
    server: RunningServer,  # noqa: F811
) -> None:
    version = _version(mlflow_python)
    prefix = f"tour{version.replace('.', '')}"
    seen = _script(mlflow_python, server, "tracking_tour.py", prefix)
    check_tracking_tour(seen, prefix, three=version.startswith("3."))

    # The registry's: an MLflow model the run logged, packaged on the server per version.
    logged = _script(mlflow_python, server, "log_sklearn.py", f"rt-{version}")
    prefix = f"rt{version.replace('.', '')}"
    seen = _script(
        mlflow_python, server, "registry_tour.py", str(logged["run_id"]), "model", prefix
    )
    check_registry_tour(seen, prefix)
