"""``ModelRuntime``: a verified model behind a columnar, checked, vectorised predict.

Requests arrive as JSON and leave as JSON; in between, a request is a ``Columns`` (one typed
NumPy array per signature column) and its answer a ``Prediction``. Converting and checking
happen once per request, per column, before any batching (see ``loopml.packaging.columns``), so
a batch never fails because of one request's input. ``predict_many`` runs several requests
as one model call.

An ONNX package runs on its ONNX Runtime session directly, fed per the packaging input
scheme (one ``[N, 1]`` tensor per column: float32, or strings with "" for missing), so a
classifier's labels and probabilities come from one run. A skops package goes through
``LoadedModel.predict``/``predict_proba``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from loopml.core.errors import LoopmlError, ValidationError
from loopml.packaging import LoadedModel, Signature, dates, load_model
from loopml.packaging.columns import check_rows, from_instances, numeric_matrix, to_array

log = logging.getLogger("loopml.serve")

_LABEL_DTYPES: dict[str, type] = {
    "string": object,
    "integer": np.int64,
    "boolean": np.bool_,
    "float": np.float64,
}


class Columns:
    """One request's input, checked against the signature.

    Attributes:
        arrays: one array per signature column, by column name (see ``loopml.packaging.columns``
            for the dtypes).
        rows: the number of rows, the length of every array.
        matrix: for an all-number signature, the same values as one ``[columns, rows]``
            float64 matrix, which an ONNX model is fed from in one conversion; ``None``
            otherwise. Built from a matrix (``from_matrix``), ``arrays`` are its rows, made
            only when asked for: thirty array views per request were a measurable share of
            a busy server's time (and of its garbage collections).
    """

    __slots__ = ("_arrays", "_names", "matrix", "rows")

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray] | None,
        rows: int,
        matrix: np.ndarray | None = None,
        names: Sequence[str] = (),
    ) -> None:
        self._arrays = arrays
        self._names = names
        self.rows = rows
        self.matrix = matrix

    @classmethod
    def from_matrix(cls, names: Sequence[str], matrix: np.ndarray) -> Columns:
        """Columns of a ``[columns, rows]`` matrix whose rows are ``names``' values."""
        return cls(None, matrix.shape[1], matrix, names)

    @property
    def arrays(self) -> Mapping[str, np.ndarray]:
        if self._arrays is None:
            assert self.matrix is not None
            self._arrays = dict(zip(self._names, self.matrix, strict=True))
        return self._arrays


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's answer for some rows.

    Attributes:
        predictions: ``[rows]``: class labels (typed like the signature's classes) for a
            classifier, values for a regressor.
        probabilities: ``[rows, classes]`` in ``ModelRuntime.classes`` order for a
            classifier, else ``None``.
    """

    predictions: np.ndarray
    probabilities: np.ndarray | None = None

    def split(self, sizes: Sequence[int]) -> list[Prediction]:
        """Cut into consecutive parts of ``sizes`` rows (views, not copies)."""
        parts: list[Prediction] = []
        start = 0
        for size in sizes:
            end = start + size
            proba = None if self.probabilities is None else self.probabilities[start:end]
            parts.append(Prediction(self.predictions[start:end], proba))
            start = end
        return parts


class ModelRuntime:
    """A loaded model as the server runs it.

    Thread-safe: ``predict`` may run in several threads at once.

    Attributes:
        model: the loaded, verified model.
        signature: its signature (inputs, outputs, task, classes).
        input_names: the signature's column names, in order.
        classes: the class labels, in probability-column order; ``None`` for a regressor.
        format: ``onnx`` or ``skops``, the format that is served.
        platform: ``onnxruntime_onnx``, ``sklearn_skops`` or ``lightgbm_skops``.
        label_dtype: the dtype of a classifier's labels.
        value_dtype: the dtype of probabilities and regression values (float32 from ONNX
            Runtime, float64 from the native model).
    """

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.signature: Signature = model.manifest.signature
        self.input_names = [c.name for c in self.signature.inputs]
        self.format = model.format
        # The V2 metadata's platform, in Triton's <backend>_<format> style.
        self.platform = (
            "onnxruntime_onnx" if model.format == "onnx" else f"{model.manifest.flavor}_skops"
        )
        self.is_classifier = self.signature.task == "classification"
        self.classes = list(self.signature.classes or []) if self.is_classifier else None
        self._session = model.session
        self._graph_inputs: list[str] = (
            [i.name for i in self._session.get_inputs()] if self._session is not None else []
        )
        label_type = self.signature.outputs[0].type if self.is_classifier else "float"
        self.label_dtype = np.dtype(_LABEL_DTYPES[label_type])
        # ONNX Runtime computes in float32; the native model in float64.
        self.value_dtype = np.dtype(np.float32 if self._session is not None else np.float64)
        self._calls = 0
        self._lock = threading.Lock()
        # The model's own columns: the signature's, a datetime column as its calendar parts.
        self._has_dates = dates.has_dates(self.signature)
        self._model_columns = dates.model_columns(self.signature)

    @property
    def model_calls(self) -> int:
        """How many model calls ``predict`` made (a batch of requests is one call)."""
        return self._calls

    def columns_from_instances(
        self, instances: object, *, max_rows: int | None = None, ignore_extra: bool = False
    ) -> Columns:
        """Check ``/predict`` instances (records, or value arrays in column order); with
        ``ignore_extra``, record keys the model does not take are dropped, not refused.

        Raises:
            ValidationError: see ``loopml.packaging.columns.from_instances``; the message names
                the column and the first offending row.
        """
        matrix = numeric_matrix(self.signature, instances, max_rows, ignore_extra)
        if matrix is not None:
            return Columns.from_matrix(self.input_names, matrix)
        arrays = from_instances(self.signature, instances, max_rows, ignore_extra)
        return Columns(arrays, len(next(iter(arrays.values()))))

    def columns_from_values(
        self, values: Mapping[str, Sequence[Any]], *, max_rows: int | None = None
    ) -> Columns:
        """Check one sequence of JSON values per column (all columns, equal lengths).

        Raises:
            ValidationError: a missing or unknown column, unequal lengths, a wrong value.
        """
        names = self.input_names
        if set(values) != set(names):
            missing = [n for n in names if n not in values]
            unknown = sorted(set(values).difference(names))
            raise ValidationError(
                f"columns do not match the model: missing {missing}, unknown {unknown[:20]}; "
                f"the model takes {names}",
                details={"missing": missing, "unknown": unknown[:100], "expected": names},
            )
        rows = {len(v) for v in values.values()}
        if len(rows) != 1:
            raise ValidationError(
                f"columns have different lengths {sorted(rows)}: every column needs one value "
                "per row",
                details={"lengths": {n: len(v) for n, v in values.items()}},
            )
        count = rows.pop()
        check_rows(count, max_rows, "rows")
        arrays = {s.name: to_array(s, values[s.name]) for s in self.signature.inputs}
        return Columns(arrays, count)

    def predict(self, columns: Columns) -> Prediction:
        """Run the model once on ``columns``.

        Raises:
            ValidationError: the native (skops) model refused the rows, such as a missing
                value its estimator cannot take.
        """
        with self._lock:
            self._calls += 1
        return self._run(columns)

    def predict_many(self, batch: Sequence[Columns]) -> list[Prediction]:
        """Run several requests as one model call; one ``Prediction`` per request."""
        if len(batch) == 1:
            return [self.predict(batch[0])]
        if self._session is not None and all(part.matrix is not None for part in batch):
            matrix = np.concatenate([part.matrix for part in batch], axis=1)
            whole = self.predict(Columns.from_matrix(self.input_names, matrix))
        else:
            arrays = {
                name: np.concatenate([part.arrays[name] for part in batch])
                for name in self.input_names
            }
            whole = self.predict(Columns(arrays, sum(part.rows for part in batch)))
        return whole.split([part.rows for part in batch])

    def warm_up(self) -> None:
        """Run the model once on a made-up row, so the first request does not pay for
        ONNX Runtime's first-run allocations. Best effort: a model that refuses the row
        (an unknown category, say) is simply not warmed.
        """
        fill = {"float": 0.0, "integer": 0, "boolean": False, "string": "", "datetime": None}
        row = {c.name: [fill[c.type]] for c in self.signature.inputs}
        with contextlib.suppress(Exception):
            self._run(self.columns_from_values(row))

    def _run(self, columns: Columns) -> Prediction:
        if self._session is not None:
            outputs = self._session.run(None, self._onnx_feed(columns))
            if not self.is_classifier:
                return Prediction(np.ascontiguousarray(outputs[0].ravel()))
            labels = np.asarray(outputs[0]).ravel().astype(self.label_dtype, copy=False)
            return Prediction(labels, np.ascontiguousarray(outputs[1]))
        # pandas only for a native (skops) model: a replica serving ONNX never loads it.
        import pandas as pd

        frame = pd.DataFrame(self._model_arrays(columns))
        try:
            values = np.asarray(self.model.predict(frame)).ravel()
            proba = self.model.predict_proba(frame) if self.is_classifier else None
        except ValueError as exc:
            # scikit-learn's way of refusing an input (a missing value an estimator cannot
            # take, an unknown category): the caller's rows, not the server, must change.
            raise ValidationError(
                f"the model cannot score these rows: {str(exc)[:500]}",
                details={"reason": "model_refused_input"},
            ) from exc
        if proba is None:
            return Prediction(values.astype(np.float64, copy=False))
        proba = np.ascontiguousarray(proba, dtype=np.float64)
        return Prediction(values.astype(self.label_dtype, copy=False), proba)

    def _onnx_feed(self, columns: Columns) -> dict[str, np.ndarray]:
        if columns.matrix is not None:
            # One conversion; each row of the float32 matrix is contiguous, so each [N, 1]
            # input is a view of it.
            values = columns.matrix.astype(np.float32)
            return {name: values[i].reshape(-1, 1) for i, name in enumerate(self._graph_inputs)}
        arrays = self._model_arrays(columns)
        feed: dict[str, np.ndarray] = {}
        for graph_name, spec in zip(self._graph_inputs, self._model_columns, strict=True):
            array = arrays[spec.name]
            if spec.type == "string":
                import pandas as pd  # a model with a string column only (loaded by warm_up)

                array = np.where(pd.isna(array), "", array)
            else:
                array = array.astype(np.float32)
            feed[graph_name] = array.reshape(-1, 1)
        return feed

    def _model_arrays(self, columns: Columns) -> Mapping[str, np.ndarray]:
        if not self._has_dates:
            return columns.arrays
        return dates.expand_arrays(self.signature, columns.arrays)


def load_runtime(
    path: Path,
    *,
    manifest_sha256: str | None,
    prefer: Literal["primary", "onnx", "skops"] = "primary",
) -> ModelRuntime:
    """Load a package, verified, for serving: its primary format, else skops.

    When the primary format is ONNX but ONNX Runtime cannot open the graph (an operator or
    opset this onnxruntime lacks), the skops copy is served instead, with a warning. A
    failed verification never falls back: nothing in that package is trusted.

    Raises:
        ArtifactIntegrityError, UnsafeArtifactError, NotFoundError: as ``load_model``.
    """
    try:
        return ModelRuntime(
            load_model(path, manifest_sha256=manifest_sha256, prefer=prefer, single_thread=True)
        )
    except LoopmlError:
        raise
    except Exception as exc:
        if prefer == "skops":
            raise
        log.warning("ONNX Runtime cannot load %s (%s); serving the skops copy", path, exc)
        return ModelRuntime(load_model(path, manifest_sha256=manifest_sha256, prefer="skops"))
