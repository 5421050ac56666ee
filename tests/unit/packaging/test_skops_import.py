"""skops is imported without torch (``_skops.skops_io``): its trusted-type listing walks
every sklearn package, and one of them imports torch when it is installed, 0.9 s of CPU in
every process that packages or loads a model. A thread that imports torch meanwhile still
gets it."""

from __future__ import annotations

import importlib.util

import pytest

from tests.import_probe import modules_after

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed (the text extra)"
)

PACKAGE_AND_LOAD = """
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from loopml.packaging import _skops
rows = np.arange(40.0).reshape(20, 2)
model = RandomForestClassifier(n_estimators=3, random_state=0).fit(rows, [0, 1] * 10)
data, trusted = _skops.dump(model)
assert (_skops.load(data, trusted).predict(rows) == model.predict(rows)).all()
"""


def test_packaging_and_loading_a_skops_model_leaves_torch_unimported() -> None:
    assert "torch" not in modules_after(PACKAGE_AND_LOAD)


def test_torch_imported_by_another_thread_meanwhile_is_torch() -> None:
    statement = """
import threading
from loopml.packaging import _skops
got = []
thread = threading.Thread(target=lambda: got.append(__import__("torch").__name__))
thread.start()
_skops.skops_io()
thread.join()
assert got == ["torch"], got
"""
    modules = modules_after(statement)
    assert {"torch", "skops.io"} <= modules
