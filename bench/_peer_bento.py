"""BentoML on the packaged ONNX forest, for ``bench/serving.py``: one service, one worker,
taking the V2 infer body at ``POST /v2/models/forest/infer`` (BentoML binds the body's
``inputs`` field to the API's parameter). Run from a virtual environment with ``bentoml``
and ``onnxruntime``: ``LOOPML_PEER_MODEL=MODEL bentoml serve _peer_bento:ForestService
--port PORT --working-dir bench``."""

from __future__ import annotations

import os
from typing import Any

import bentoml
from _peer_onnx import Forest


@bentoml.service(workers=1)
class ForestService:
    def __init__(self) -> None:
        self.forest = Forest(os.environ["LOOPML_PEER_MODEL"])

    @bentoml.api(route="/v2/models/forest/infer")
    def infer(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"model_name": "forest", "outputs": self.forest.infer(inputs[0])}
