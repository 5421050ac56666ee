"""The deployment page's snippets for ``/predict`` and for V2 infer: what they send is the
model's example row, in a body the serving side's own parser takes (the browser test runs
them against a real replica)."""

from __future__ import annotations

import html
import json
import re
import shlex
from typing import Any

import pytest
from fastapi.testclient import TestClient

from loopml.core.inference import parse_request
from loopml.deploy import DeploymentControl
from loopml.packaging import Signature
from loopml.portal.pages._snippets import datatype, snippets, v2_inputs
from tests.unit.deploy.deploy_support import PackageFiles, package_files, register_files

COLUMNS = [f"f{i}" for i in range(8)]
URLS = {
    "predict": "http://127.0.0.1:8000/projects/p/deployments/d/predict",
    "v2": "http://127.0.0.1:8000/projects/p/deployments/d/v2/models/d/infer",
}


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFiles:
    return package_files(tmp_path_factory.mktemp("package") / "pkg")


def _pre(page: str, element: str) -> str:
    found = re.search(rf'<pre id="{element}"[^>]*>(.*?)</pre>', page, re.S)
    assert found, f"no {element} on the page"
    return html.unescape(found.group(1))


def _sent(curl: str) -> Any:
    words = shlex.split(curl)
    return json.loads(words[words.index("-d") + 1])


def test_the_page_shows_a_v2_curl_and_python_snippet_with_the_example_row(
    anonymous: TestClient, package: PackageFiles
) -> None:
    ctx = anonymous.app.state.running.context  # type: ignore[attr-defined]
    register_files(ctx.store, ctx.artifacts, package)
    control: DeploymentControl = anonymous.app.state.running.serving.control  # type: ignore[attr-defined]
    control.create("default", "churn", {"model": "cancer/1", "min_replicas": 0}, actor="t")
    page = anonymous.get("/projects/default/deployments/churn")
    assert page.status_code == 200, page.text
    row = _sent(_pre(page.text, "snippet-curl"))["instances"][0]
    v2_curl = _pre(page.text, "snippet-v2-curl")
    url = "http://127.0.0.1/projects/default/deployments/churn/v2/models/churn/infer"
    assert shlex.split(v2_curl)[:3] == ["curl", "-s", url]
    request = parse_request(_sent(v2_curl))  # the serving side's own reading of the body
    assert [t.name for t in request.inputs] == COLUMNS
    assert {(t.datatype, tuple(t.shape)) for t in request.inputs} == {("FP64", (1,))}
    assert {t.name: t.data[0] for t in request.inputs} == row
    python = _pre(page.text, "snippet-v2-python")
    compile(python, "snippet", "exec")
    assert url in python
    assert "'datatype': 'FP64'" in python
    assert "['outputs']" in python
    for snippet in ("curl", "python", "v2-curl", "v2-python"):
        assert f'data-copy="snippet-{snippet}"' in page.text
        assert f'id="snippet-{snippet}-note"' in page.text  # where the Copy button reports


def test_each_value_gets_a_datatype_that_carries_it() -> None:
    signature = Signature.model_validate({
        "inputs": [{"name": "x", "type": "float"}, {"name": "n", "type": "integer"},
                   {"name": "b", "type": "boolean"}, {"name": "s", "type": "string"}],
        "outputs": [{"name": "prediction", "type": "float"}],
        "task": "regression",
    })  # fmt: skip
    row = {"x": 3, "n": 2, "b": True, "s": "a"}
    assert [(t["name"], t["datatype"]) for t in v2_inputs(row, signature)] == [
        ("x", "FP64"),  # an integer value of a float column: FP64 holds it
        ("n", "INT64"),
        ("b", "BOOL"),
        ("s", "BYTES"),
    ]
    assert datatype("integer", None) == "FP64"  # a missing value: FP tensors hold null
    assert datatype("string", None) == "BYTES"
    assert datatype("boolean", 1) == "INT64"
    assert [datatype(None, v) for v in (1.5, 2, False, "x")] == ["FP64", "INT64", "BOOL", "BYTES"]
    parse_request({"inputs": v2_inputs(row, signature)})


def test_with_a_token_the_snippets_read_it_from_the_environment() -> None:
    made = snippets(URLS, {"f0": 1.5}, None, token=True)
    assert sorted(made) == ["curl", "python", "v2_curl", "v2_python"]
    for curl in (made["curl"], made["v2_curl"]):
        assert "Authorization: Bearer $LOOPML_TOKEN" in shlex.split(curl)
    for python in (made["python"], made["v2_python"]):
        compile(python, "snippet", "exec")
        assert python.startswith("import os\n")
        assert "os.environ['LOOPML_TOKEN']" in python
    plain = snippets(URLS, {"f0": 1.5}, None, token=False)
    assert "LOOPML_TOKEN" not in "".join(plain.values())


def test_without_a_v2_url_only_the_predict_snippets_are_made() -> None:
    # A deployment completed from feature views: the gateway refuses V2 for it.
    made = snippets({"predict": URLS["predict"]}, {"f0": 1.5}, None, token=False)
    assert sorted(made) == ["curl", "python"]
