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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from loopml.core.deployments import validate_deployment_name
from loopml.core.errors import LoopmlError, ValidationError
from loopml.core.ids import new_id
from loopml.core.lake import WriteMode, validate_table_name, validate_write_mode
from loopml.core.predictions import BatchResult, parse_table_ref
from loopml.core.refs import ModelRef
from loopml.data import files, lake, lake_files
from loopml.data.parquet_files import DataFile
from loopml.packaging.runtime import ModelRuntime, load_runtime
from loopml.registry.packages import fetch_package
from loopml.scoring._chunks import ChunkScorer, OutputRows, Progress, check_input
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, deployments

if TYPE_CHECKING:
    from loopml.core.registry import ModelVersion
    from loopml.scoring.ray_batch import Placement, RayTarget, TableFiles

__all__ = ["DEFAULT_CHUNK_ROWS", "MAX_CHUNK_ROWS", "Progress", "score_table"]

DEFAULT_CHUNK_ROWS = 50_000
MAX_CHUNK_ROWS = 1_000_000


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
    ray: RayTarget | None = None,
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
        ray: where to score on Ray (``loopml.scoring.ray_batch``): the input table's
            files are read and scored by actors on the cluster, the output still written
            here as one commit, with the same columns and values as without it.

    Raises:
        ValidationError: bad arguments; the input lacks a model column (``details.missing``)
            or holds one named like an output column; a value the model's column refuses.
        NotFoundError: no such table, version, model, deployment or project.
        ConflictError: the model version is not READY.
        ConfigurationError: ``ray`` given, and Ray is not installed here, or the cluster is
            on other machines while the lake is a local folder.
    """
    write_mode = validate_write_mode(mode)
    validate_table_name(output)
    if not 1 <= chunk_rows <= MAX_CHUNK_ROWS:
        raise ValidationError(
            f"chunk_rows must be between 1 and {MAX_CHUNK_ROWS}, got {chunk_rows}",
            details={"field": "chunk_rows"},
        )
    ref = _model_ref(store, project, model, deployment)
    if ray is not None:
        return _score_on_ray(
            store, artifacts, project, ray, input, output, workdir, ref, write_mode, actor,
            chunk_rows, lake_settings, progress,
        )  # fmt: skip
    schema, batches = _open_input(store, artifacts, project, input)
    version, runtime, _ = _load(store, artifacts, project, ref, workdir, keep_files=False)
    check_input(runtime, schema, version.model, version.version)
    scorer = ChunkScorer(runtime, schema)
    rows = OutputRows(scorer.schema, version.model, version.version)
    commit = _ingest(
        store,
        artifacts,
        project,
        output,
        rows.stream(_score_here(scorer, _chunks(batches, chunk_rows)), progress),
        write_mode,
        actor,
        lake_settings,
        _lineage(version, input),
        rows,
    )
    return _result(rows, output, commit, version, runtime)


def _score_on_ray(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    target: RayTarget,
    input: str | Path,
    output: str,
    workdir: Path,
    ref: str,
    mode: WriteMode,
    actor: str,
    chunk_rows: int,
    lake_settings: LakeSettings | None,
    progress: Progress | None,
) -> BatchResult:
    from loopml.scoring import ray_batch

    if not isinstance(input, str):
        raise ValidationError(
            "scoring on Ray reads a lake table's files on the cluster: ingest the file into "
            "a table first (`loopml predict --input FILE` does that)",
            details={"field": "input"},
        )
    ray_batch.refuse_unreachable_lake(target)
    source = ray_batch.open_table(store, artifacts, project, input)
    version, runtime, package = _load(store, artifacts, project, ref, workdir, keep_files=True)
    check_input(runtime, source.schema, version.model, version.version)
    # Last: a request that names no table or model never starts a Ray instance.
    ray = ray_batch.connect(target)
    rows = OutputRows(ChunkScorer(runtime, source.schema).schema, version.model, version.version)
    placement = ray_batch.Placement()
    existed = _exists(store, project, output)
    try:
        write = (
            lake_files.begin(store, artifacts, project, output, rows.schema, mode=mode, actor=actor)
            if source.units
            else None
        )
    except Exception:  # a full disk: the row begin created for a new output goes too
        if not existed:
            _drop_if_empty(store, artifacts, project, output, actor)
        raise
    if write is None:
        # A contract checks the rows here, before they land; an empty input: one empty commit.
        scored = ray_batch.score(
            ray, source, package, version.manifest_sha256, chunk_rows, placement=placement
        )
        stream = rows.stream(scored, progress)
        commit = _ingest(
            store, artifacts, project, output, stream, mode, actor, lake_settings,
            _lineage(version, input), rows,
        )  # fmt: skip
    else:
        commit = _commit_files(
            store, artifacts, ray, write, source, package, version, chunk_rows, rows, placement,
            progress, lake_settings, actor, existed, _lineage(version, input),
        )  # fmt: skip
    return _result(rows, output, commit, version, runtime).model_copy(
        update={
            "ray_nodes": dict(sorted(placement.rows_by_node.items())),
            "ray_actors": placement.actors,
        }
    )


def _commit_files(
    store: MetadataStore,
    artifacts: ArtifactStore,
    ray: Any,
    write: lake_files.FilesWrite,
    source: TableFiles,
    package: dict[str, bytes],
    version: ModelVersion,
    chunk_rows: int,
    rows: OutputRows,
    placement: Placement,
    progress: Progress | None,
    lake_settings: LakeSettings | None,
    actor: str,
    existed: bool,
    metadata: dict[str, str],
) -> int:
    """Score on the cluster with each actor writing its files of the output, then commit
    them all as one version (none of them on a failure)."""
    from loopml.scoring import ray_batch

    files: list[DataFile] = []
    try:
        files = ray_batch.write_files(
            ray, source, package, version.manifest_sha256, chunk_rows, write.sink,
            rows.stamper, placement=placement, progress=progress,
        )  # fmt: skip
        rows.rows = sum(f.rows for f in files)
        commit = lake_files.commit(
            store, artifacts, write, files, metadata=metadata, actor=actor,
            lake_settings=lake_settings,
        )  # fmt: skip
    except Exception:
        lake_files.abandon(write, files)
        if not existed:
            _drop_if_empty(store, artifacts, project=write.project, table=write.table, actor=actor)
        raise
    return commit.version


def _load(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    ref: str,
    workdir: Path,
    *,
    keep_files: bool,
) -> tuple[ModelVersion, ModelRuntime, dict[str, bytes]]:
    """The version, loaded (verified) as a replica loads it, and its package's files when
    ``keep_files`` (to load it again elsewhere)."""
    workdir.mkdir(parents=True, exist_ok=True)
    folder = workdir / f"batch-{new_id()}"
    try:
        version, path = fetch_package(store, artifacts, project, ref, folder)
        runtime = load_runtime(path, manifest_sha256=version.manifest_sha256)
        package = (
            {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file()}
            if keep_files
            else {}
        )
    finally:
        # Both formats are in memory once loaded: the files are not needed to score.
        shutil.rmtree(folder, ignore_errors=True)
    return version, runtime, package


def _lineage(version: ModelVersion, input: str | Path) -> dict[str, str]:
    source = str(input) if isinstance(input, str) else f"file {input.name}"
    return {
        "loopml.batch_scoring": json.dumps(
            {"model": version.model, "version": version.version, "input": source}
        )
    }


def _result(
    rows: OutputRows, output: str, commit: int, version: ModelVersion, runtime: ModelRuntime
) -> BatchResult:
    return BatchResult(
        rows=rows.rows,
        output=output,
        output_version=commit,
        model=version.model,
        version=version.version,
        classes=runtime.classes,
    )


def _score_here(scorer: ChunkScorer, chunks: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    offset = 0
    for chunk in chunks:
        if chunk.num_rows:
            yield scorer.score(chunk, offset)
            offset += chunk.num_rows


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
    scorer: OutputRows,
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
