"""Batch scoring's two halves, shared by the local path and the Ray path.

``ChunkScorer`` is the model's side: an input chunk in, the chunk with ``prediction`` (and a
classifier's ``probabilities``) out. It runs where the model is loaded: in the server's
process, or once per actor on a Ray node. ``OutputRows`` is the writer's side, always in the
process that commits the output: it numbers the rows in input order (``inference_id``), adds
``model`` and ``model_version``, and counts them. So both paths give the same rows the same
columns, types and values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.errors import ValidationError
from loopml.core.ids import new_id
from loopml.core.predictions import BATCH_OUTPUT_COLUMNS
from loopml.packaging import ColumnSpec
from loopml.packaging.columns import to_array
from loopml.packaging.runtime import Columns, ModelRuntime, Prediction

Progress = Callable[[int], None]
"""Called with the number of rows scored so far, after each chunk."""

_PREDICTION_TYPES = {"O": pa.string(), "U": pa.string(), "i": pa.int64(), "b": pa.bool_()}


def check_input(runtime: ModelRuntime, schema: pa.Schema, model: str, version: int) -> None:
    """Refuse an input the model cannot score, before any row is read.

    Raises:
        ValidationError: a model column is missing, or a column is named like an output one.
    """
    names = set(schema.names)
    missing = [n for n in runtime.input_names if n not in names]
    if missing:
        raise ValidationError(
            f"the input lacks the model's column(s) {missing[:20]}: model {model} version "
            f"{version} takes {runtime.input_names[:50]}",
            details={"missing": missing, "expected": runtime.input_names},
        )
    taken = [n for n in BATCH_OUTPUT_COLUMNS if n in names]
    if taken:
        raise ValidationError(
            f"the input has column(s) {taken} named like the columns batch scoring adds "
            f"{list(BATCH_OUTPUT_COLUMNS)}: rename or drop them first",
            details={"columns": taken},
        )


def scored_schema(runtime: ModelRuntime, schema: pa.Schema) -> pa.Schema:
    """The input's columns, then ``prediction`` and a classifier's ``probabilities``."""
    fields = [*schema, pa.field("prediction", _prediction_type(runtime))]
    if runtime.is_classifier:
        fields.append(pa.field("probabilities", pa.list_(pa.float64())))
    return pa.schema(fields)


def _prediction_type(runtime: ModelRuntime) -> pa.DataType:
    if not runtime.is_classifier:
        return pa.float64()
    return _PREDICTION_TYPES.get(runtime.label_dtype.kind, pa.string())


class ChunkScorer:
    """Scores chunks of the input with a loaded model version."""

    def __init__(self, runtime: ModelRuntime, schema: pa.Schema) -> None:
        self.runtime = runtime
        self.schema = scored_schema(runtime, schema)

    def score(self, chunk: pa.RecordBatch, offset: int) -> pa.RecordBatch:
        """``chunk`` with its predictions; ``offset``: its first row's place in the input,
        for the row an error names."""
        columns = Columns(
            {
                spec.name: _column(spec, chunk.column(spec.name), offset)
                for spec in self.runtime.signature.inputs
            },
            chunk.num_rows,
        )
        prediction = self.runtime.predict(columns)
        return pa.RecordBatch.from_arrays(
            [*chunk.columns, *self._predicted(prediction)], schema=self.schema
        )

    def _predicted(self, prediction: Prediction) -> list[pa.Array]:
        kind = self.schema.field("prediction").type
        values = prediction.predictions
        labels = values.tolist() if kind == pa.string() else values
        arrays: list[pa.Array] = [pa.array(labels, type=kind)]
        if self.runtime.is_classifier:
            assert prediction.probabilities is not None
            proba = np.asarray(prediction.probabilities, dtype=np.float64)
            flat = pa.FixedSizeListArray.from_arrays(pa.array(proba.ravel()), proba.shape[1])
            arrays.append(flat.cast(pa.list_(pa.float64())))
        return arrays


@dataclass(frozen=True)
class RowStamp:
    """What the writer adds to scored rows: ``inference_id`` (``<batch id>-<row>``, the row
    counted from the input's start), ``model`` and ``model_version``. Plain data, so a Ray
    actor that writes its own files stamps its rows as the server would."""

    schema: pa.Schema
    batch_id: str
    model: str
    version: int

    @classmethod
    def of(cls, scored: pa.Schema, model: str, version: int) -> RowStamp:
        schema = pa.schema(
            [
                *scored,
                pa.field("inference_id", pa.string()),
                pa.field("model", pa.string()),
                pa.field("model_version", pa.int64()),
            ]
        )
        return cls(schema, new_id(), model, version)

    def apply(self, scored: pa.RecordBatch, first_row: int) -> pa.RecordBatch:
        """``scored`` with the columns added; ``first_row``: its first row's place in the
        input."""
        rows = scored.num_rows
        numbers = pa.array(np.arange(first_row, first_row + rows, dtype=np.int64))
        ids = pc.binary_join_element_wise(f"{self.batch_id}-", pc.cast(numbers, pa.string()), "")
        arrays = [
            *scored.columns,
            ids,
            pa.array([self.model] * rows, pa.string()),
            pa.array(np.full(rows, self.version, dtype=np.int64)),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


class OutputRows:
    """Turns scored chunks, in input order, into the output table's batches."""

    def __init__(self, scored: pa.Schema, model: str, version: int) -> None:
        self.stamper = RowStamp.of(scored, model, version)
        self.model, self.version = model, version
        self.schema = self.stamper.schema
        self.batch_id = self.stamper.batch_id
        self.rows = 0
        self.failure: Exception | None = None

    def stamp(self, scored: pa.RecordBatch) -> pa.RecordBatch:
        """The output batch of the next ``scored`` chunk: ids numbered from the rows so far."""
        stamped = self.stamper.apply(scored, self.rows)
        self.rows += scored.num_rows
        return stamped

    def stream(
        self, scored: Iterator[pa.RecordBatch], progress: Progress | None
    ) -> Iterator[pa.RecordBatch]:
        """The output batches; an error is kept in ``failure`` before it is raised (it
        crosses the native writer, which loses its class)."""
        try:
            for batch in scored:
                if batch.num_rows == 0:
                    continue
                yield self.stamp(batch)
                if progress is not None:
                    progress(self.rows)
        except Exception as exc:
            self.failure = exc
            raise


def _column(spec: ColumnSpec, column: pa.Array, offset: int) -> np.ndarray:
    """One input column as the runtime's array (see ``loopml.packaging.columns``): numbers
    straight from Arrow; anything else through the server's own checks."""
    kind = column.type
    if spec.type in ("float", "integer") and pa.types.is_integer(kind):
        return _floats(column)
    if spec.type == "float" and pa.types.is_floating(kind):
        return _floats(column)
    if spec.type == "boolean" and pa.types.is_boolean(kind) and column.null_count == 0:
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=bool)
    if spec.type == "string" and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
    if spec.type == "datetime" and (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        # Arrow keeps a zoned timestamp as UTC: dropping the zone keeps those values.
        utc = pc.cast(column, pa.timestamp("us"))
        return np.asarray(utc.to_numpy(zero_copy_only=False), dtype="datetime64[us]")
    try:
        return to_array(spec, column.to_pylist())
    except ValidationError as exc:
        raise _at_input_row(exc, offset) from None


def _floats(column: pa.Array) -> np.ndarray:
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64)


def _at_input_row(exc: ValidationError, offset: int) -> ValidationError:
    """The error with its row counted from the start of the input, not of the chunk."""
    row = exc.details.get("row")
    if not isinstance(row, int) or offset == 0:
        return exc
    message = exc.message.replace(f": row {row} has", f": row {offset + row} has", 1)
    return ValidationError(message, details={**exc.details, "row": offset + row})
