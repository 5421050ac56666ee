"""What ``loopml up`` imports before anyone calls it. pandas (about 45 MB resident, pulled in
by ``pyarrow.dataset``), DuckDB (about 30 MB) and the training stack are loaded by the first
request that needs them, not at start: they took an idle ``loopml up`` from 227 MB to
291-297 MB of resident memory (target 250 MB, bench/startup.py)."""

from __future__ import annotations

from tests.import_probe import modules_after

LAZY = ("pandas", "pyarrow.dataset", "duckdb", "scipy", "sklearn", "onnxruntime", "lightgbm")
# The rest of the ML stack, and Ray (issue 53): `loopml up` answers health without them; the
# start-up's order, with what each step imported, is tests/e2e/test_startup_order.py.
ML_STACK = ("onnx", "skl2onnx", "xgboost", "flaml", "ray", "torch")


def _loaded_after(statement: str) -> list[str]:
    loaded = modules_after(statement)
    return sorted(m for m in LAZY if m in loaded)


def test_the_platform_starts_without_pandas_duckdb_or_the_training_stack() -> None:
    statement = "import loopml.cli.main, loopml.platform.app, loopml.cli.server"
    loaded = modules_after(statement)
    assert sorted(m for m in (*LAZY, *ML_STACK) if m in loaded) == []


def test_the_probe_sees_a_module_that_is_loaded() -> None:
    # The probe itself can fail: reading a table loads pyarrow.dataset and pandas.
    assert _loaded_after("import pyarrow.dataset") == ["pandas", "pyarrow.dataset"]


def test_a_gateway_process_loads_neither_numpy_nor_the_platform() -> None:
    # numpy alone was 12 MB of a gateway process's 53 (it came with the prediction log's
    # types); the store, Starlette and the tables are the platform's, not the gateway's.
    loaded = modules_after("import loopml.serve.gateway.process")
    heavy = ("numpy", "pyarrow", "sqlalchemy", "starlette", "fastapi", "httpx", *LAZY)
    assert sorted(m for m in heavy if m in loaded) == []


def test_a_batch_scoring_actor_loads_neither_the_lake_nor_the_store() -> None:
    # Every Ray scoring actor imports its class's module: from ray_batch, with the lake,
    # the store and their engines, that was 1.3 s of a 2 s actor start.
    loaded = modules_after("import loopml.scoring._ray_actor")
    heavy = ("loopml.data.lake", "loopml.store", "deltalake", "sqlalchemy", "duckdb")
    assert sorted(m for m in heavy if m in loaded) == []
