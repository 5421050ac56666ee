"""What a V2 infer request costs in-process, per form, against ``/predict`` on the same rows
(issue 53): the model server's check (decode, parse, tensors to the ``[columns, rows]``
matrix), the prediction log's rows from the answer as a gateway saw it, and the whole
request through the model server's ASGI app (no sockets: parse, model, answer).

Forms: one ``[N, 30]`` FP32 tensor, 30 one-column ``[N]`` FP32 tensors (as a client that
follows the model's V2 metadata sends them), and ``/predict``'s records; N = 1 and 100.
The model: a 20-tree random forest (max depth 6) on breast cancer's 30 columns, served by
ONNX Runtime. CPU time (``time.process_time``), best of 5 repeats.

``--against SRC`` measures another source tree too (a ``git worktree`` of the commit before,
its ``src``) beside the one this process imports, each tree in its own process, in turn
(A, B, A, B, ...; ``--turns``), and prints both with their ratio: the figures of one run,
on one machine in one state.

Run: ``python bench/serving_v2_checks.py [--against /tmp/v2old/src] [--turns 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np
import orjson

FORMS = ("V2 [N, 30]", "V2 30 x [N]", "/predict")


def _bodies(names: list[str], rows: int) -> dict[str, tuple[str, bytes]]:
    values = np.random.default_rng(0).random((rows, len(names))).astype("float32").astype(float)
    one: dict[str, Any] = {"name": "input-0", "shape": [rows, len(names)], "datatype": "FP32"}
    one["data"] = values.ravel().tolist()
    columns = [
        {"name": n, "shape": [rows], "datatype": "FP32", "data": values[:, i].tolist()}
        for i, n in enumerate(names)
    ]
    records = [dict(zip(names, row, strict=True)) for row in values.tolist()]
    return {
        "V2 [N, 30]": ("/v2/models/m/infer", orjson.dumps({"inputs": [one]})),
        "V2 30 x [N]": ("/v2/models/m/infer", orjson.dumps({"inputs": columns})),
        "/predict": ("/predict", orjson.dumps({"instances": records})),
    }


def _best(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5, timer=time.process_time)) / number


def _package(where: Path) -> Path:
    from sklearn import datasets
    from sklearn.ensemble import RandomForestClassifier

    from loopml.packaging import package_model

    frame, target = datasets.load_breast_cancer(as_frame=True, return_X_y=True)
    model = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
    package = package_model(model.fit(frame, target), where / "pkg", sample=frame)
    (where / "sha256").write_text(package.manifest_sha256)
    return where


async def _asgi_call(app: Any, path: str, body: bytes) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    given = False
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal given
        if given:
            await asyncio.sleep(3600)
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    assert statuses == [200], statuses


async def _whole_requests(runtime: Any, bodies: dict[str, tuple[str, bytes]]) -> dict[str, float]:
    from loopml.serve import create_model_app

    app = create_model_app(runtime, deployment="d", model_name="m", version=1)
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await to_app.put({"type": "lifespan.startup"})
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(lifespan, to_app.get, from_app.put))
    await from_app.get()
    best: dict[str, float] = {}
    for _ in range(5):
        for form, (path, body) in bodies.items():
            for _ in range(50):
                await _asgi_call(app, path, body)
            started = time.process_time()
            for _ in range(500):
                await _asgi_call(app, path, body)
            spent = (time.process_time() - started) / 500
            best[form] = min(best.get(form, spent), spent)
    task.cancel()
    return best


def measure(package: Path) -> dict[str, float]:
    """Microseconds per request, by ``"<what> <form> N=<rows>"``."""
    from loopml.core.inference import parse_predict, parse_request
    from loopml.packaging import load_model
    from loopml.predictions._rows import answer_rows
    from loopml.predictions.intake import Answer
    from loopml.serve import ModelRuntime
    from loopml.serve.server import v2

    sha256 = (package / "sha256").read_text()
    runtime = ModelRuntime(load_model(package / "pkg", manifest_sha256=sha256))
    names = runtime.input_names

    def check(form: str, body: bytes) -> Any:
        if form == "/predict":
            parsed = parse_predict(orjson.loads(body))
            return runtime.columns_from_instances(parsed.instances, max_rows=None)
        request = parse_request(orjson.loads(body))
        v2.output_names(runtime, request)
        return v2.columns_from_request(runtime, request, None)

    found: dict[str, float] = {}
    for rows in (1, 100):
        bodies = _bodies(names, rows)
        prediction = runtime.predict(check("V2 [N, 30]", bodies["V2 [N, 30]"][1]))
        outputs = v2.response_outputs(runtime, prediction, ["predict", "predict_proba"])
        answer_body = orjson.dumps({"outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
        number = 2000 if rows == 1 else 100
        for form, (path, body) in bodies.items():
            found[f"check {form} N={rows}"] = _best(lambda f=form, b=body: check(f, b), number)
            if form == "/predict":
                continue
            answer = Answer("p", "d", 1, "m", 1, "primary", "id", path, 200, 0.001,
                            time.time(), body, answer_body)  # fmt: skip
            assert len(answer_rows(answer)) == rows
            found[f"log rows {form} N={rows}"] = _best(lambda a=answer: answer_rows(a), number)
    whole = asyncio.run(_whole_requests(runtime, _bodies(names, 1)))
    found.update({f"whole request {form} N=1": spent for form, spent in whole.items()})
    return {key: seconds * 1e6 for key, seconds in found.items()}


def _print(results: dict[str, list[dict[str, float]]]) -> None:
    trees = list(results)
    keys = list(results[trees[0]][0])
    print(f"{'us per request (median of turns)':<34}" + "".join(f"{t[-28:]:>30}" for t in trees))
    for key in keys:
        medians = [statistics.median(run[key] for run in results[t]) for t in trees]
        line = f"{key:<34}" + "".join(f"{m:30.1f}" for m in medians)
        if len(trees) == 2:
            line += f"   {medians[0] / medians[1]:.2f} x"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="another tree's src, measured in turn with this one")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a child: one tree, one turn
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return
    import loopml

    here = str(Path(loopml.__file__).parents[1])  # the tree this process imports
    trees = [here, *([args.against] if args.against else [])]
    with tempfile.TemporaryDirectory() as tmp:
        package = _package(Path(tmp))
        results: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
        for _ in range(args.turns):
            for tree in trees:
                env = {**os.environ, "PYTHONPATH": tree}
                command = [sys.executable, __file__, "--measure", str(package)]
                out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                results[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
    _print(results)


if __name__ == "__main__":
    main()
