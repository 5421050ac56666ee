"""Queries run in a separate process whose memory the kernel bounds.

DuckDB's ``memory_limit`` covers only what its buffer manager allocates. A single large
value does not go through it: ``SELECT length(repeat('x', 2147483647))`` grew the server by
about 4 GB against a 1 GB limit, and interrupting the connection does not stop it (one
``repeat`` is one allocation). So each query runs in a worker process of a small pool, and
before each query the worker lowers its own data-segment limit (``RLIMIT_DATA``: heap and
private mappings) to what it uses now plus the query's budget. An allocation past it fails
inside DuckDB as an out-of-memory error, which the caller gets as a 422; the server's own
memory never moves.

The result page comes back as an Arrow IPC file in a temporary folder, memory-mapped by the
caller, so a large ``query_all`` result is not copied through a pipe. A streamed job
(``batch_rows``) never holds its result whole on either side: the worker writes each batch
as DuckDB yields it, and the caller reads the file back a batch at a time
(``QueryProcessPool.stream``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa

from loopml.core.errors import LoopmlError, QueryTimeoutError, ValidationError
from loopml.data._sandbox import QueryLimits

if TYPE_CHECKING:
    import pyarrow.dataset as pads

# A streamed query's room besides DuckDB's budget: Arrow's scan of the lake's files reads
# ahead (several fragments, many batches each) outside DuckDB's accounting, and the
# allocators' reservations count too. Measured on a 10,000,000-row view with a 1 GB budget:
# the worker peaked at 2.7 GB resident, 3.3 GB of data segment, with 1.3 GB at its start.
_HEADROOM_BYTES = 2 * 1024 * 1024 * 1024
# How long past its own time limit a worker may take to answer before it is killed.
_GRACE_S = 10.0
_ERRORS: dict[str, type[LoopmlError]] = {
    cls.__name__: cls for cls in (ValidationError, QueryTimeoutError)
}


@dataclass(frozen=True)
class QueryJob:
    """One query for a worker: the SQL, the tables to register, its limits."""

    sql: str
    tables: list[tuple[str, pads.Dataset | pa.Table]]
    sandbox: QueryLimits
    timeout_s: float
    budget_bytes: int
    out_path: str
    batch_rows: int = 0
    """When above 0, the result is written ``batch_rows`` rows at a time (an IPC stream)
    and may reach ``max_result_bytes`` on disk; else it is one IPC file."""
    max_result_bytes: int = 0


def parse_bytes(text: str) -> int:
    """``'1GB'``, ``'512MB'``, ``'1GiB'`` (DuckDB's spellings) as a number of bytes."""
    units = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
    units |= {"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}
    value = text.strip().upper().replace(" ", "")
    number = value.rstrip("KMGTIB")
    unit = value[len(number) :]
    if not number or unit not in units:
        raise ValueError(f"not a memory size: {text!r} (expected, for example, '1GB')")
    return int(float(number) * units[unit])


def _vm_data_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _limit_data(budget_bytes: int) -> None:
    """Lower this process's data-segment limit to what it uses now plus ``budget_bytes``."""
    import resource

    used = _vm_data_bytes()
    if used is None:  # not Linux: no /proc, no RLIMIT_DATA that counts mappings
        return
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = used + budget_bytes
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _unlimit_data() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))


def _work(job: QueryJob) -> tuple[str, Any]:
    """In the worker: run the query; ``("ok", columns)`` or ``("error", (kind, msg, details))``."""
    from loopml.data._sandbox import execute, open_connection

    _limit_data(job.budget_bytes)
    try:
        spill = os.path.join(os.path.dirname(job.out_path), "spill")
        con = open_connection(job.sandbox, spill if job.batch_rows > 0 else None)
        try:
            for alias, dataset in job.tables:
                con.register(alias, dataset)
            if job.batch_rows > 0:
                return "ok", _write_batches(con, job)
            table, columns = execute(con, job.sql, job.timeout_s)
        finally:
            con.close()
        with pa.OSFile(job.out_path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
            out.write_table(table)
        return "ok", columns
    except LoopmlError as exc:
        return "error", (type(exc).__name__, exc.message, exc.details)
    except MemoryError:
        return "error", ("ValidationError", _over_budget(job.budget_bytes), {})
    finally:
        _unlimit_data()


def _write_batches(con: Any, job: QueryJob) -> list[tuple[str, str]]:
    """Run the job's query and write its result to ``out_path`` a batch at a time."""
    from loopml.data._sandbox import columns_of, guarded

    written = 0
    with guarded(con, job.timeout_s):
        cursor = con.execute(job.sql)
        columns = columns_of(cursor)
        reader = cursor.to_arrow_reader(job.batch_rows)
        with pa.OSFile(job.out_path, "wb") as sink, pa.ipc.new_stream(sink, reader.schema) as out:
            for batch in reader:
                written += batch.nbytes
                if written > job.max_result_bytes:
                    raise ValidationError(
                        f"the query's result is over the limit of {job.max_result_bytes} "
                        "bytes: select fewer rows or columns",
                        details={"limit_bytes": job.max_result_bytes},
                    )
                out.write_batch(batch)
    return columns


def _sendable(data: pads.Dataset) -> pads.Dataset | pa.Table:
    import pyarrow.dataset as pads

    # An in-memory dataset does not pickle; its table does (and is small: a test's rows, or
    # a table created with columns and no data yet).
    if isinstance(data, pads.InMemoryDataset):
        return data.to_table()
    return data


def _over_budget(budget_bytes: int) -> str:
    return (
        f"the query needed more memory than its budget of {budget_bytes // 2**20} MiB and was "
        "stopped: filter or aggregate earlier, or read fewer or smaller values"
    )


class _Worker:
    """One worker process: ``python -m loopml.data._query_process``, jobs over its pipes.

    A plain subprocess rather than ``multiprocessing``: spawn re-imports the caller's
    ``__main__``, which fails in any script without a ``__main__`` guard (a user's training
    script that materializes a dataset, a benchmark).
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loopml.data._query_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def ask(self, job: QueryJob, timeout_s: float) -> tuple[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        _send(self.process.stdin, job)
        answer: list[tuple[str, Any]] = []
        reader = threading.Thread(target=lambda: answer.append(_receive(self.process.stdout)))
        reader.daemon = True
        reader.start()
        reader.join(timeout_s)
        if reader.is_alive():
            self.kill()
            raise FutureTimeout
        if not answer:
            raise EOFError("the query worker stopped")
        return answer[0]

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _send(stream: IO[bytes], value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">Q", len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes] | None) -> Any:
    assert stream is not None
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the query worker stopped")
    (size,) = struct.unpack(">Q", header)
    # Only loopml's own worker (or the server, to it) writes to these pipes.
    return pickle.loads(stream.read(size))  # noqa: S301


def _close_at_exit(pool: weakref.ref[QueryProcessPool]) -> None:
    found = pool()
    if found is not None:
        found.close()


class QueryProcessPool:
    """Idle worker processes, reused; each runs one query at a time (see the module)."""

    def __init__(self, max_idle: int = 2) -> None:
        self._max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        # Idle workers would outlive their Popen objects at exit (and warn of it); a weak
        # reference, so a pool dropped earlier is not kept for the exit.
        atexit.register(_close_at_exit, weakref.ref(self))

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    return worker
        return _Worker()

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(worker)
                return
        worker.kill()

    def close(self) -> None:
        """Stop the idle workers (a later query starts new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def run(
        self,
        sql: str,
        tables: list[tuple[str, pads.Dataset]],
        sandbox: QueryLimits,
        timeout_s: float,
        budget_bytes: int,
    ) -> tuple[pa.Table, list[tuple[str, str]]]:
        """Run ``sql`` with ``tables`` registered, in a worker; the result and its columns.

        Raises:
            ValidationError: the query failed, or needed more than ``budget_bytes``.
            QueryTimeoutError: it ran past ``timeout_s``.
        """
        folder = tempfile.mkdtemp(prefix="loopml-query-")
        try:
            out_path = os.path.join(folder, "result.arrow")
            sendable = [(alias, _sendable(data)) for alias, data in tables]
            job = QueryJob(sql, sendable, sandbox, timeout_s, budget_bytes, out_path)
            columns = self._submit(job)
            with pa.memory_map(out_path) as source:
                table = pa.ipc.open_file(source).read_all()
            return table, columns
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def stream(
        self,
        sql: str,
        tables: list[tuple[str, pads.Dataset]],
        sandbox: QueryLimits,
        timeout_s: float,
        *,
        batch_rows: int,
        max_result_bytes: int,
    ) -> Iterator[pa.RecordBatchReader]:
        """Run ``sql`` in a worker, its result written to disk a batch at a time; a reader
        of those batches, read from the file as they are asked for (neither side holds the
        whole result). The file is deleted when the block ends.

        Raises:
            ValidationError: the query failed, needed more than DuckDB's memory budget, or
                its result is over ``max_result_bytes``.
            QueryTimeoutError: it ran past ``timeout_s``.
        """
        folder = tempfile.mkdtemp(prefix="loopml-query-")
        try:
            out_path = os.path.join(folder, "result.arrows")
            sendable = [(alias, _sendable(data)) for alias, data in tables]
            # DuckDB's budget, and the batches in flight besides it.
            budget = parse_bytes(sandbox.memory_limit) + _HEADROOM_BYTES
            job = QueryJob(
                sql, sendable, sandbox, timeout_s, budget, out_path, batch_rows, max_result_bytes
            )
            self._submit(job)
            with pa.OSFile(out_path, "rb") as source:
                yield pa.ipc.open_stream(source)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _submit(self, job: QueryJob) -> list[tuple[str, str]]:
        worker = self._take()
        try:
            kind, value = worker.ask(job, job.timeout_s + _GRACE_S)
        except FutureTimeout:
            raise QueryTimeoutError(
                f"the query ran longer than its time limit of {job.timeout_s:g} s and was stopped",
                details={"timeout_s": job.timeout_s},
            ) from None
        except (EOFError, OSError, pickle.UnpicklingError):
            # The worker died: killed for memory by the kernel, or aborted on an allocation
            # DuckDB did not catch. The next query starts a new one.
            worker.kill()
            raise ValidationError(
                "the query's worker process stopped while running it, most likely out of "
                f"memory (budget {job.budget_bytes // 2**20} MiB): filter or aggregate "
                "earlier, or read fewer or smaller values"
            ) from None
        except BaseException:
            # Anything else (a job that cannot be pickled, an interrupt): the worker may be
            # mid-job, so it is stopped; dropped running, its Popen would warn when collected.
            worker.kill()
            raise
        self._give_back(worker)
        if kind == "ok":
            columns: list[tuple[str, str]] = value
            return columns
        name, message, details = value
        raise _ERRORS.get(name, ValidationError)(message, details=details)


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The worker's loop: one job in, one answer out, until the server closes the pipe."""
    while True:
        try:
            job = _receive(stdin)
        except EOFError:
            return
        _send(stdout, _work(job))


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
