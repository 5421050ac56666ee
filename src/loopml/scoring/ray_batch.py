"""Batch scoring on a Ray cluster: the input table's files read and scored in parallel.

The server (or a ``batch_predict`` step) is the driver. It resolves the table version to its
Delta files and their Parquet row groups (the units of work, in the order the local path
reads them), and starts one actor per free CPU of the cluster, spread over its nodes (at
least one, which fails the scoring with the reason when no CPU frees up for it in
``ACTOR_START_S``: a ``batch_predict`` step on the Ray executor holds a CPU itself). Each actor
loads the model version once, from the package's files verified against the registry's
manifest hash (``load_runtime``, the serving runtime), then reads the row groups it is
handed straight from the lake and scores them ``chunk_rows`` at a time (``ChunkScorer``,
the local path's code). ``write_files``: each actor also adds the writer's columns
(``RowStamp``, numbered from the row group's place in the input) and writes the row group as
a data file of the output table (``parquet_files.FileSink``); the driver takes the files'
descriptions back in input order and commits them as one version (``lake_files``), so no
scored row crosses the object store or the driver. ``score`` sends the scored rows back
instead, for an output whose contract must see them. Either way the same rows get the same
columns and values as on the local path.

Plain Ray actors, not Ray Data's ``map_batches``: Ray Data 2.60's read tasks need a CPU
beside the actor pool's, and on 1-CPU nodes its plan waits forever for one.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from loopml.cluster.ray import import_ray, init_ray, refuse_local_storage
from loopml.core.errors import LoopmlError, ServiceUnavailableError
from loopml.core.executors import RayExecutorConfig
from loopml.core.predictions import parse_table_ref
from loopml.data import lake
from loopml.data.parquet_files import DataFile, FileSink, remove
from loopml.scoring._chunks import Progress, RowStamp
from loopml.scoring._ray_actor import ScoringActor, Unit
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

_PURPOSE = "batch scoring on Ray (--on ray)"
IN_FLIGHT = 2
"""Row groups queued per actor."""
# How long the first scoring actor may wait for a CPU before the scoring fails (the step is
# retried by its policy), and how much longer the others may take to start after it.
ACTOR_START_S = 120.0
ALSO_START_S = 5.0
RELEASE_WAIT_S = 5.0
"""Longest a call waits, after killing its actors, for the cluster to show their CPUs free."""
_CONNECT = threading.Lock()


@dataclass
class Placement:
    """Where one call's row groups were scored: the rows each Ray node scored, by the node's
    address, and how many actors (one per CPU free when the call began) scored them."""

    rows_by_node: dict[str, int] = field(default_factory=dict)
    actors: int = 0

    def add(self, node: str, rows: int) -> None:
        self.rows_by_node[node] = self.rows_by_node.get(node, 0) + rows


@dataclass(frozen=True)
class RayTarget:
    """Where batch scoring joins a Ray cluster: the worker's (``worker.executor`` of type
    ``ray``), else a Ray instance of this process's own (``ray.init()``)."""

    address: str | None
    settings: Settings

    @classmethod
    def of(cls, settings: Settings) -> RayTarget:
        executor = settings.worker.executor
        address = executor.address if isinstance(executor, RayExecutorConfig) else None
        return cls(address=address, settings=settings)


def refuse_unreachable_lake(target: RayTarget) -> None:
    """Refuse a cluster on other machines when the lake is a local folder (its nodes read
    the lake themselves); the metadata database is the driver's alone.

    Raises:
        ConfigurationError: naming the cluster and ``artifacts.root``.
    """
    refuse_local_storage(target.address, target.settings, database=False)


def connect(target: RayTarget) -> Any:
    """The ``ray`` module, joined to the target's cluster (once per process: later calls
    reuse the connection).

    Raises:
        ConfigurationError: Ray is not installed; the cluster is on other machines while the
            lake and artifacts are a local folder.
        ServiceUnavailableError: the cluster cannot be reached.
    """
    refuse_unreachable_lake(target)
    ray = import_ray(_PURPOSE)
    with _CONNECT:
        if not ray.is_initialized():
            try:
                init_ray(ray, target.address)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ServiceUnavailableError(
                    f"cannot reach the Ray cluster at {target.address or '(local)'}: {exc}"
                ) from exc
    # The address ray.init resolved (RAY_ADDRESS, a cluster found here) too.
    refuse_local_storage(ray.get_runtime_context().gcs_address, target.settings, database=False)
    return ray


@dataclass(frozen=True)
class TableFiles:
    """A table version as the actors read it: its schema, its row groups in order, and the
    filesystem (Delta Lake's, with the store's options) that opens them."""

    schema: pa.Schema
    units: list[Unit]
    filesystem: Any


def open_table(
    store: MetadataStore, artifacts: ArtifactStore, project: str, ref: str
) -> TableFiles:
    """The row groups of table ``ref`` (``customers``, ``customers@3``), in the order the
    local path reads its rows (footers only are read here).

    Raises:
        NotFoundError: no such project, table or version.
    """
    table, version = parse_table_ref(ref)
    dataset = lake.read_dataset(store, artifacts, project, table, version)
    if not isinstance(dataset, ds.FileSystemDataset):  # a table with no data yet
        return TableFiles(schema=dataset.schema, units=[], filesystem=None)
    units: list[Unit] = []
    offset = 0
    for fragment in dataset.get_fragments():
        fragment.ensure_complete_metadata()
        for group in fragment.row_groups:
            if group.num_rows:
                units.append(Unit(fragment.path, group.id, offset, group.num_rows))
                offset += group.num_rows
    return TableFiles(schema=dataset.schema, units=units, filesystem=dataset.filesystem)


def score(
    ray: Any,
    source: TableFiles,
    package: dict[str, bytes],
    manifest_sha256: str | None,
    chunk_rows: int,
    *,
    placement: Placement,
    start_timeout_s: float = ACTOR_START_S,
) -> Iterator[pa.RecordBatch]:
    """The scored rows, in input order, from one actor per free CPU of the cluster (no
    more than there are row groups). ``IN_FLIGHT`` row groups per actor are queued, so an actor
    scores its next one while this process writes the last. ``placement`` counts the actors,
    and the rows each Ray node scored as they come back.

    This is the path for an output this process must see the rows of (a table with a
    validation contract); ``write_files`` has the actors write the output's files instead.
    """
    answers = _dispatch(
        ray, source, package, manifest_sha256, chunk_rows, start_timeout_s, placement,
        lambda actor, unit: actor.score.remote(unit),
    )  # fmt: skip
    for table, node in answers:
        placement.add(node, table.num_rows)
        yield from table.to_batches()


def write_files(
    ray: Any,
    source: TableFiles,
    package: dict[str, bytes],
    manifest_sha256: str | None,
    chunk_rows: int,
    sink: FileSink,
    stamp: RowStamp,
    *,
    placement: Placement,
    start_timeout_s: float = ACTOR_START_S,
    progress: Progress | None = None,
) -> list[DataFile]:
    """The output's data files, in input order: each actor scores a row group, adds the
    writer's columns (``stamp``) and writes it to ``sink`` as one file; only the files'
    descriptions come back. ``progress`` is called with the rows written so far.

    Raises:
        LoopmlError, ServiceUnavailableError: as ``_fetched``; the files written before the
            failure are removed (best effort).
    """
    sink_ref, stamp_ref = ray.put(sink), ray.put(stamp)
    answers = _dispatch(
        ray, source, package, manifest_sha256, chunk_rows, start_timeout_s, placement,
        lambda actor, unit: actor.write.remote(unit, sink_ref, stamp_ref),
    )  # fmt: skip
    files: list[DataFile] = []
    rows = 0
    try:
        with contextlib.closing(answers):
            for written, node in answers:
                files.append(written)
                rows += written.rows
                placement.add(node, written.rows)
                if progress is not None:
                    progress(rows)
    except BaseException:
        remove(sink, files)
        raise
    return files


def _dispatch(
    ray: Any,
    source: TableFiles,
    package: dict[str, bytes],
    manifest_sha256: str | None,
    chunk_rows: int,
    start_timeout_s: float,
    placement: Placement,
    call: Callable[[Any, Unit], Any],
) -> Generator[tuple[Any, str]]:
    """Each row group's answer (``call``'s, on one of the actors), in input order, with the
    address of the node that gave it. ``IN_FLIGHT`` calls per actor are queued, so an actor
    works on its next row group while this process takes the last answer."""
    if not source.units:
        return
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < 1:
        raise ServiceUnavailableError(
            "the Ray cluster has no CPU for the scoring actors (each takes 1): add a node "
            "with CPUs, or score without --on ray"
        )
    # As many actors as there are free CPUs now (at least one, which waits for a CPU): an
    # actor for a CPU another task holds would keep its queued row groups waiting.
    free = int(ray.available_resources().get("CPU", 0))
    count = min(len(source.units), max(1, free))
    remote = ray.remote(num_cpus=1, max_restarts=0, scheduling_strategy="SPREAD")(ScoringActor)
    shared = ray.put(package)
    args = (shared, manifest_sha256, source.schema, source.filesystem, chunk_rows)
    actors = _started(ray, [remote.remote(*args) for _ in range(count)], cpus, start_timeout_s)
    count = placement.actors = len(actors)
    try:
        nodes = [_fetched(ray, ref) for ref in [actor.node.remote() for actor in actors]]
        units = iter(enumerate(source.units))
        pending: deque[tuple[Any, str]] = deque()

        def send(index: int, unit: Unit) -> None:
            pending.append((call(actors[index % count], unit), nodes[index % count]))

        for index, unit in itertools.islice(units, count * IN_FLIGHT):
            send(index, unit)
        while pending:
            ref, node = pending.popleft()
            answer = _fetched(ray, ref)
            for index, unit in itertools.islice(units, 1):
                send(index, unit)
            yield answer, node
    finally:
        for actor in actors:
            ray.kill(actor)
        _await_release(ray, free)


def _await_release(ray: Any, free: int) -> None:
    """Wait (``RELEASE_WAIT_S`` at most) until the cluster shows the ``free`` CPUs this call
    found free again. Ray reports a killed actor's CPU free a moment later, and the next call
    sizes its actors on what is free then: back to back, it started one actor on two nodes,
    and scored at one node's speed."""
    deadline = time.monotonic() + RELEASE_WAIT_S
    while int(ray.available_resources().get("CPU", 0)) < free:
        if time.monotonic() >= deadline:
            return
        time.sleep(0.02)


def _started(ray: Any, actors: list[Any], cpus: int, timeout_s: float) -> list[Any]:
    """The actors that started: the first within ``timeout_s``, the rest within
    ``ALSO_START_S`` after it (the others are killed).

    Raises:
        ServiceUnavailableError: none started: every CPU of the cluster stayed taken (a
            ``batch_predict`` step on the Ray executor holds one itself).
    """
    ready = {actor.__ray_ready__.remote(): actor for actor in actors}
    done, waiting = ray.wait(list(ready), num_returns=1, timeout=timeout_s)
    if done and waiting:
        more, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=ALSO_START_S)
        done += more
    for ref in waiting:
        ray.kill(ready[ref])
    if not done:
        raise ServiceUnavailableError(
            f"no scoring actor could start on the Ray cluster in {timeout_s:g} s: each takes "
            f"a CPU, and all {cpus} of the cluster's stayed taken (a batch_predict step run by "
            "a worker on the Ray executor holds one itself). Add a node with CPUs, or score "
            "without on: ray",
            details={"reason": "ray_no_free_cpu", "cluster_cpus": cpus},
        )
    started = {id(ready[ref]) for ref in done}
    return [actor for actor in actors if id(actor) in started]


def _fetched(ray: Any, ref: Any) -> Any:
    """A scored row group (or an actor's other answer); the error to report when it could
    not be scored.

    Raises:
        LoopmlError: the node's own (a value a column refuses).
        ServiceUnavailableError: the actor, its process or its node died first (nothing of
            the output is written: the commit comes after the last row group).
    """
    errors = ray.exceptions
    try:
        answer = ray.get(ref)
    except errors.RayTaskError as exc:
        if isinstance(exc.cause, LoopmlError):
            raise exc.cause from None
        raise
    except (
        errors.RayActorError,
        errors.NodeDiedError,
        errors.WorkerCrashedError,
        errors.ObjectLostError,
        errors.OutOfMemoryError,
    ) as exc:
        why = " ".join(str(exc).split())[:300]
        raise ServiceUnavailableError(
            f"a scoring actor on the Ray cluster died before it answered "
            f"({type(exc).__name__}: {why}); nothing was written: score again (a node was "
            "lost, or it ran out of memory)",
            details={"reason": "ray_actor_died"},
        ) from exc
    return answer
