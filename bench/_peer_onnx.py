"""The ONNX work both V2 peers of ``bench/serving.py`` do (KServe's ModelServer and BentoML,
each run from a virtual environment of its own): the model loaded once, one V2 input tensor
``[N, C]`` fed to it as the one-column-per-input graph loopml packaged, and the answer's
output tensors. Imports only NumPy and ONNX Runtime."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort


class Forest:
    """The packaged ONNX forest, on one thread (as loopml's replica runs it)."""

    def __init__(self, path: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [(i.name, i.type) for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, matrix: np.ndarray) -> list[np.ndarray]:
        """The outputs for ``matrix`` ([rows, columns], in the graph's input order)."""
        feed = {}
        for index, (name, kind) in enumerate(self.inputs):
            dtype = np.float32 if kind == "tensor(float)" else np.float64
            feed[name] = matrix[:, index : index + 1].astype(dtype, copy=False)
        return list(self.session.run(self.outputs, feed))

    def infer(self, tensor: dict[str, Any]) -> list[dict[str, Any]]:
        """V2 output tensors for one V2 input tensor given as JSON."""
        matrix = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        answers = []
        for name, array in zip(self.outputs, self.run(matrix), strict=True):
            array = np.asarray(array)
            datatype = "INT64" if array.dtype.kind == "i" else "FP32"
            answers.append(
                {"name": name, "shape": list(array.shape), "datatype": datatype,
                 "data": array.reshape(-1).tolist()}
            )  # fmt: skip
        return answers
