"""KServe's Python ModelServer on the packaged ONNX forest, for ``bench/serving.py``: V2
REST (``POST /v2/models/forest/infer``) as KServe serves a custom model. Run from a virtual
environment with ``kserve`` and ``onnxruntime``: ``python bench/_peer_kserve.py MODEL PORT``.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import numpy as np
from _peer_onnx import Forest
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class ForestModel(Model):  # type: ignore[misc]
    def __init__(self, path: str) -> None:
        super().__init__("forest")
        self.forest = Forest(path)
        self.ready = True

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        matrix = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        outputs = []
        for name, array in zip(self.forest.outputs, self.forest.run(matrix), strict=True):
            array = np.asarray(array)
            output = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
            if array.dtype.kind == "i":
                output = InferOutput(name=name, shape=list(array.shape), datatype="INT64")
            output.set_data_from_numpy(array, binary_data=False)
            outputs.append(output)
        answer_id = payload.id or uuid.uuid4().hex  # loopml gives each answer an id too
        return InferResponse(model_name="forest", infer_outputs=outputs, response_id=answer_id)


def main(argv: list[str]) -> Any:
    path, port = argv[1], int(argv[2])
    ModelServer(http_port=port, grpc_port=port + 1, workers=1, enable_grpc=False).start(
        [ForestModel(path)]
    )


if __name__ == "__main__":
    main(sys.argv)
