"""A fine-tuned encoder as a text package: ONNX export with a parity check, plus tokenizer.

The exported graph takes ``input_ids`` and ``attention_mask`` (``[N, T]`` int64, both axes
dynamic) and gives probabilities (classification, softmax in the graph) or the value in the
target's own scale (regression: the graph undoes the training scale). Parity runs the torch
model and ONNX Runtime on up to ``PARITY_ROWS`` sample texts tokenized by the packaged
tokenizer; a difference above the tolerance refuses the package (a text model has no skops
fallback to serve instead).
"""

from __future__ import annotations

import importlib.metadata
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from loopml.core.errors import ValidationError
from loopml.packaging import ColumnSpec, ModelPackage, ParityReport, Signature
from loopml.packaging.text import TextConfig, encode, load_tokenizer
from loopml.packaging.text_write import write_text_package
from loopml.train.text._data import Targets, base_task

PARITY_ROWS = 200
# float32 through six attention layers: differences of 1e-6 are usual, 1e-4 is far below a
# wrong conversion (which moves probabilities by whole percents).
DEFAULT_TOLERANCE = 1e-4
OPSET = 17
INPUT_NAMES = ["input_ids", "attention_mask"]
_LIBRARIES = ("torch", "transformers", "tokenizers", "onnx", "onnxruntime")


def _head(model: Any, targets: Targets) -> Any:
    import torch

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            if targets.classes is not None:
                return torch.softmax(logits, dim=-1)
            return logits[:, :1] * targets.std + targets.mean

    return Head().eval()


def export_graph(model: Any, targets: Targets, example: dict[str, np.ndarray]) -> bytes:
    """The model and its head as ONNX bytes (TorchScript exporter, opset ``OPSET``)."""
    import torch

    head = _head(model.to("cpu").eval(), targets)
    args = tuple(torch.from_numpy(example[n]) for n in INPUT_NAMES)
    buffer = io.BytesIO()
    # The TorchScript exporter: the torch.export-based one (the default since torch 2.9)
    # needs onnxscript and traces far slower. The tracer warns where transformers compares
    # shapes in Python; parity on a batch of another shape (``package_text_model``) is what
    # proves the graph did not freeze a length.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head,
            args,
            buffer,  # type: ignore[arg-type]
            input_names=INPUT_NAMES,
            output_names=["output"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in INPUT_NAMES}
            | {"output": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def text_parity(
    model: Any,
    targets: Targets,
    session: Any,
    feed: dict[str, np.ndarray],
    tolerance: float,
) -> ParityReport:
    """Compare torch and ONNX Runtime on the same tokenized texts."""
    import torch

    head = _head(model, targets)
    with torch.no_grad():
        native = head(*(torch.from_numpy(feed[n]) for n in INPUT_NAMES)).numpy()
    got = np.asarray(session.run(None, feed)[0])
    if targets.classes is None:
        diff = float(np.max(np.abs(got - native) / np.maximum(1.0, np.abs(native))))
        agreement = None
    else:
        diff = float(np.max(np.abs(got - native)))
        agreement = float(np.mean(np.argmax(got, 1) == np.argmax(native, 1)))
    return ParityReport(
        rows=len(got),
        max_abs_diff=diff,
        tolerance=tolerance,
        passed=bool(np.isfinite(diff) and diff <= tolerance),
        label_agreement=agreement,
    )


def _reshaped(tokenizer: Any, sample: list[str], config: TextConfig) -> dict[str, np.ndarray]:
    """Three texts (a short one first) plus a long one: a new batch size and width."""
    texts = [*sorted(sample[:3], key=len), " ".join(sample[:8])]
    return encode(tokenizer, texts, config.input_names)


def _versions() -> dict[str, str]:
    found = {}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def package_text_model(
    model: Any,
    tokenizer_json: str,
    config: TextConfig,
    targets: Targets,
    sample: list[str],
    dest: Path,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ModelPackage:
    """Export, check parity and write the package folder ``dest``.

    Raises:
        ValidationError: parity failed (the report is in the details), or no sample text.
    """
    from loopml.packaging.onnx_export import onnx_session

    if not sample:
        raise ValidationError("packaging a text model needs at least one sample text")
    tokenizer = load_tokenizer(tokenizer_json.encode(), config)
    feed = encode(tokenizer, sample[:PARITY_ROWS], config.input_names)
    data = export_graph(model, targets, feed)
    session = onnx_session(data)
    report = text_parity(model, targets, session, feed, tolerance)
    # Another batch size and padded length than the traced one: dynamic axes really are.
    other = text_parity(model, targets, session, _reshaped(tokenizer, sample, config), tolerance)
    if other.max_abs_diff > report.max_abs_diff or not np.isfinite(other.max_abs_diff):
        report = report.model_copy(
            update={"max_abs_diff": other.max_abs_diff, "passed": other.passed}
        )
    if not report.passed:
        raise ValidationError(
            f"the ONNX export of the text model differs from it by {report.max_abs_diff:.3g} "
            f"(tolerance {tolerance}): refusing to package it",
            details={"parity": report.model_dump(mode="json")},
        )
    task = base_task(targets.task)
    signature = Signature(
        inputs=[ColumnSpec(name=config.text_column, type="string")],
        outputs=_outputs(targets),
        task=task,
        classes=targets.classes,
    )
    return write_text_package(
        dest,
        onnx_bytes=data,
        tokenizer_json=tokenizer_json,
        config=config,
        signature=signature,
        parity=report,
        example=sample[:5],
        library_versions=_versions(),
    )


def _outputs(targets: Targets) -> Any:
    from loopml.packaging import column_type

    if targets.classes is None:
        return [ColumnSpec(name="prediction", type="float")]
    import pandas as pd

    label_type = column_type(pd.Series(np.asarray(targets.classes)))
    return [
        ColumnSpec(name="label", type=label_type),
        ColumnSpec(name="probabilities", type="float"),
    ]
