"""The V2 peers of ``bench/serving.py``: KServe's Python ModelServer (``_peer_kserve.py``) and
BentoML (``_peer_bento.py``), each from a virtual environment of its own (their pins differ
from loopml's), on the same ONNX file the deployment serves, pinned to the servers' core,
answering the same V2 infer body (one ``[1, 30]`` FP32 tensor). Make the environments with::

    python3 -m venv /tmp/kserve && /tmp/kserve/bin/pip install kserve onnxruntime
    python3 -m venv /tmp/bento && /tmp/bento/bin/pip install bentoml onnxruntime

and pass ``--kserve-python /tmp/kserve/bin/python --bentoml-python /tmp/bento/bin/python``
(or ``LOOPML_BENCH_KSERVE_PYTHON``, ``LOOPML_BENCH_BENTOML_PYTHON``); a peer not given is
skipped, and said so."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from _load import Result, measure
from _serving_platform import _process, free_port

HERE = Path(__file__).resolve().parent
INFER = "/v2/models/forest/infer"


def add_options(parser: argparse.ArgumentParser) -> None:
    for peer, what in (("kserve", "kserve"), ("bentoml", "bentoml")):
        parser.add_argument(
            f"--{peer}-python",
            default=os.environ.get(f"LOOPML_BENCH_{peer.upper()}_PYTHON"),
            help=f"an interpreter of a venv with {what} and onnxruntime (see _serving_peers)",
        )


def peer_rows(
    args: argparse.Namespace, model: Path, v2_body: bytes, work: Path
) -> dict[str, Result]:
    """Each peer given, measured on V2 infer; the skipped ones said so."""
    rows: dict[str, Result] = {}
    if args.kserve_python:
        port = free_port()
        command = [args.kserve_python, str(HERE / "_peer_kserve.py"), str(model), str(port)]
        ready = f"http://127.0.0.1:{port}/v2/health/ready"
        with _process(command, ready, "kserve ModelServer", cwd=HERE):
            rows["kserve ModelServer, V2"] = measure(
                f"http://127.0.0.1:{port}{INFER}", v2_body, args, work
            )
    else:
        print("kserve: skipped (give --kserve-python, see bench/_serving_peers.py)")
    if args.bentoml_python:
        port = free_port()
        bentoml = str(Path(args.bentoml_python).with_name("bentoml"))
        command = [bentoml, "serve", "_peer_bento:ForestService", "--port", str(port)]
        command += ["--host", "127.0.0.1", "--working-dir", str(HERE)]
        env = {**os.environ, "LOOPML_PEER_MODEL": str(model)}
        with _process(command, f"http://127.0.0.1:{port}/readyz", "bentoml", env=env, cwd=HERE):
            rows["bentoml, V2"] = measure(f"http://127.0.0.1:{port}{INFER}", v2_body, args, work)
    else:
        print("bentoml: skipped (give --bentoml-python, see bench/_serving_peers.py)")
    return rows
