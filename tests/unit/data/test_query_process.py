"""The query worker pool (``data._query_process``): what happens to a worker when a job
fails before its answer."""

from __future__ import annotations

import threading

import psutil
import pytest

from loopml.data._query_process import QueryProcessPool
from loopml.data._sandbox import QueryLimits


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children()}


def test_a_job_that_cannot_be_sent_stops_its_worker_instead_of_dropping_it() -> None:
    # A lock does not pickle: the job fails while being sent, after a worker was started for
    # it. Dropped still running, the worker's Popen would warn "still running" whenever the
    # collector found it, inside whatever test ran then.
    pool = QueryProcessPool()
    before = _children()
    try:
        with pytest.raises(TypeError, match="pickle"):
            pool.run("SELECT 1", [("t", threading.Lock())], QueryLimits(), 30, 2**28)  # type: ignore[list-item]
        left = _children() - before
        assert not left, f"the worker started for the failed job is still running: {left}"
    finally:
        pool.close()
