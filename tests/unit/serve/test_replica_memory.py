"""A model server serving an ONNX package never loads pandas: pandas alone was 75 MB of a
replica's 175 MB resident memory (the serving data path issue's target is 150 MB). It is
loaded where a frame is built: a native (skops) model, a string column, packaging."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.unit.conftest import Served

_PROBE = """
import json, sys
from loopml.packaging import load_model
from loopml.serve import ModelRuntime, create_model_app
from starlette.testclient import TestClient

runtime = ModelRuntime(load_model(sys.argv[1], manifest_sha256=sys.argv[2]))
runtime.warm_up()
app = create_model_app(runtime, deployment="d", model_name="m", version=1)
with TestClient(app) as client:
    answer = client.post("/predict", json={"instances": json.loads(sys.argv[3])})
    assert answer.status_code == 200, answer.text
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("pandas", "sklearn"))[:5]))
"""


def _loaded_while_serving(served: Served) -> list[str]:
    package = served.package
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            str(package.path),
            package.manifest_sha256,
            json.dumps(served.records(slice(0, 2))),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_an_onnx_replica_serves_without_pandas(cancer: Served) -> None:
    assert _loaded_while_serving(cancer) == []


def test_a_native_model_still_loads_pandas_when_it_needs_it(skops_regressor: Served) -> None:
    assert "pandas" in _loaded_while_serving(skops_regressor)
