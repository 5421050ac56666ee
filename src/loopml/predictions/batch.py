"""Batch scoring: a lake table (or a file) scored by the serving runtime, written as a table.

The model version is loaded exactly as a replica loads it (fetched, verified against the
registry's manifest hash, ONNX Runtime with the skops fallback: ``load_runtime``), and the
rows go through the same column checks as a request (a missing column is a 422 naming it;
a wrong value names the column and the input row). The input is read as Arrow batches and
scored ``chunk_rows`` at a time; the output streams into one commit of the output table
(nothing lands if any chunk fails), so memory stays bounded by a few chunks whatever the
input's size.

The output holds the input's columns, then ``prediction`` (typed as the model's labels, or
float64 values), ``probabilities`` (a classifier's, ``list<double>`` in ``classes`` order),
``inference_id`` (``<batch id>-<row>``), ``model`` and ``model_version``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopml.core.deployments import validate_deployment_name
from loopml.core.errors import LoopmlError, ValidationError
from loopml.core.ids import new_id
from loopml.core.lake import WriteMode, validate_table_name, validate_write_mode
from loopml.core.predictions import BATCH_OUTPUT_COLUMNS, BatchResult, parse_table_ref
from loopml.core.refs import ModelRef
from loopml.data import files, lake
from loopml.packaging import ColumnSpec
from loopml.packaging.columns import to_array
from loopml.packaging.runtime import Columns, ModelRuntime, Prediction, load_runtime
from loopml.registry.packages import fetch_package
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, deployments

Progress = Callable[[int], None]
"""Called with the number of rows scored so far, after each chunk."""

DEFAULT_CHUNK_ROWS = 50_000
MAX_CHUNK_ROWS = 1_000_000
_PREDICTION_TYPES = {"O": pa.string(), "U": pa.string(), "i": pa.int64(), "b": pa.bool_()}


def score_table(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    *,
    input: str | Path,
    output: str,
    workdir: Path,
    actor: str,
    model: str | None = None,
    deployment: str | None = None,
    mode: str = "append",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    lake_settings: LakeSettings | None = None,
    progress: Progress | None = None,
) -> BatchResult:
    """Score ``input`` with a model version and write the rows and predictions to ``output``.

    Args:
        input: a table reference (``customers``, ``customers@3``), or the ``Path`` of a CSV,
            Parquet or JSON Lines file (never from a client: server-side paths are trusted).
        output: the table written (created by the first write), as one commit.
        workdir: a folder for the model's package while it is loaded (removed afterwards).
        actor: who wrote, for the output table's event.
        model: the model (``churn``, ``churn/3``, ``churn@champion``); or ``deployment``,
            whose primary revision's version is used. Exactly one of them.
        mode: ``append`` or ``overwrite``.
        chunk_rows: rows per model call (and per written batch).
        lake_settings: to compact the output afterwards when it has many small files.
        progress: called with the rows scored so far after each chunk.

    Raises:
        ValidationError: bad arguments; the input lacks a model column (``details.missing``)
            or holds one named like an output column; a value the model's column refuses.
        NotFoundError: no such table, version, model, deployment or project.
        ConflictError: the model version is not READY.
    """
    write_mode = validate_write_mode(mode)
    validate_table_name(output)
    if not 1 <= chunk_rows <= MAX_CHUNK_ROWS:
        raise ValidationError(
            f"chunk_rows must be between 1 and {MAX_CHUNK_ROWS}, got {chunk_rows}",
            details={"field": "chunk_rows"},
        )
    ref = _model_ref(store, project, model, deployment)
    schema, batches = _open_input(store, artifacts, project, input)
    workdir.mkdir(parents=True, exist_ok=True)
    folder = workdir / f"batch-{new_id()}"
    try:
        version, path = fetch_package(store, artifacts, project, ref, folder)
        runtime = load_runtime(path, manifest_sha256=version.manifest_sha256)
    finally:
        # Both formats are in memory once loaded: the files are not needed to score.
        shutil.rmtree(folder, ignore_errors=True)
    scorer = _Scorer(runtime, schema, version.model, version.version)
    source = str(input) if isinstance(input, str) else f"file {input.name}"
    metadata = {
        "loopml.batch_scoring": json.dumps(
            {"model": version.model, "version": version.version, "input": source}
        )
    }
    stream = scorer.stream(_chunks(batches, chunk_rows), progress)
    commit = _ingest(
        store,
        artifacts,
        project,
        output,
        stream,
        write_mode,
        actor,
        lake_settings,
        metadata,
        scorer,
    )
    return BatchResult(
        rows=scorer.rows,
        output=output,
        output_version=commit,
        model=version.model,
        version=version.version,
        classes=runtime.classes,
    )


def _model_ref(
    store: MetadataStore, project: str, model: str | None, deployment: str | None
) -> str:
    if (model is None) == (deployment is None):
        raise ValidationError(
            "name the model to score with: either a model (churn, churn/3, churn@champion) "
            "or a deployment, not both",
            details={"fields": ["model", "deployment"]},
        )
    if model is not None:
        return str(ModelRef.parse(model))
    assert deployment is not None
    validate_deployment_name(deployment)
    with store.session() as session:
        found, roles = deployments.get_with_roles(session, project, deployment)
    primary = next(r for r in found.revisions if r.number == roles.primary)
    return f"{primary.model}/{primary.version}"


def _open_input(
    store: MetadataStore, artifacts: ArtifactStore, project: str, input: str | Path
) -> tuple[pa.Schema, Iterable[pa.RecordBatch]]:
    if isinstance(input, Path):
        reader = files.read_upload(input)
        return reader.schema, reader
    table, version = parse_table_ref(input)
    dataset = lake.read_dataset(store, artifacts, project, table, version)
    return dataset.schema, dataset.to_batches()


def _chunks(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _ingest(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    output: str,
    stream: Iterator[pa.RecordBatch],
    mode: WriteMode,
    actor: str,
    lake_settings: LakeSettings | None,
    metadata: dict[str, str],
    scorer: _Scorer,
) -> int:
    reader = pa.RecordBatchReader.from_batches(scorer.schema, stream)
    existed = _exists(store, project, output)
    try:
        commit = lake.ingest_arrow(
            store,
            artifacts,
            project,
            output,
            reader,
            mode=mode,
            actor=actor,
            lake_settings=lake_settings,
            commit_metadata=metadata,
        )
        if scorer.failure is not None:
            raise scorer.failure
    except Exception as exc:
        if not existed:
            _drop_if_empty(store, artifacts, project, output, actor)
        # An error raised while scoring crosses the native writer and loses its class: the
        # scorer kept it, and it is the one to report.
        if scorer.failure is not None and exc is not scorer.failure:
            raise scorer.failure from None
        raise
    return commit.version


def _exists(store: MetadataStore, project: str, table: str) -> bool:
    return any(t.name == table for t in lake.list_tables(store, project))


def _drop_if_empty(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str, actor: str
) -> None:
    """Remove the output table a failed scoring created without data (best effort)."""
    try:
        if lake.get_table(store, artifacts, project, table).version < 0:
            lake.delete_table(store, artifacts, project, table, actor=actor)
    except LoopmlError:
        pass


class _Scorer:
    """Scores chunks of the input and builds the output batches."""

    def __init__(self, runtime: ModelRuntime, schema: pa.Schema, model: str, version: int):
        self.runtime = runtime
        self.model, self.version = model, version
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
        fields = [*schema, pa.field("prediction", self._prediction_type())]
        if runtime.is_classifier:
            fields.append(pa.field("probabilities", pa.list_(pa.float64())))
        fields += [
            pa.field("inference_id", pa.string()),
            pa.field("model", pa.string()),
            pa.field("model_version", pa.int64()),
        ]
        self.schema = pa.schema(fields)
        self.batch_id = new_id()
        self.rows = 0
        self.failure: Exception | None = None

    def _prediction_type(self) -> pa.DataType:
        if not self.runtime.is_classifier:
            return pa.float64()
        return _PREDICTION_TYPES.get(self.runtime.label_dtype.kind, pa.string())

    def stream(
        self, chunks: Iterator[pa.RecordBatch], progress: Progress | None
    ) -> Iterator[pa.RecordBatch]:
        """The output batches; an error is kept in ``failure`` before it is raised."""
        try:
            for chunk in chunks:
                if chunk.num_rows == 0:
                    continue
                prediction = self.runtime.predict(self._columns(chunk))
                yield self._output(chunk, prediction)
                self.rows += chunk.num_rows
                if progress is not None:
                    progress(self.rows)
        except Exception as exc:
            self.failure = exc
            raise

    def _columns(self, chunk: pa.RecordBatch) -> Columns:
        arrays = {
            spec.name: _column(spec, chunk.column(spec.name), self.rows)
            for spec in self.runtime.signature.inputs
        }
        return Columns(arrays, chunk.num_rows)

    def _output(self, chunk: pa.RecordBatch, prediction: Prediction) -> pa.RecordBatch:
        rows = chunk.num_rows
        kind = self.schema.field("prediction").type
        values = prediction.predictions
        labels = values.tolist() if kind == pa.string() else values
        arrays: list[pa.Array] = [*chunk.columns, pa.array(labels, type=kind)]
        if self.runtime.is_classifier:
            assert prediction.probabilities is not None
            proba = np.asarray(prediction.probabilities, dtype=np.float64)
            flat = pa.FixedSizeListArray.from_arrays(pa.array(proba.ravel()), proba.shape[1])
            arrays.append(flat.cast(pa.list_(pa.float64())))
        first = self.rows
        ids = [f"{self.batch_id}-{i}" for i in range(first, first + rows)]
        arrays += [
            pa.array(ids, pa.string()),
            pa.array([self.model] * rows, pa.string()),
            pa.array(np.full(rows, self.version, dtype=np.int64)),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


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
