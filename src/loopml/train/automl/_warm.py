"""Importing the packaging libraries in the background while the search runs.

skl2onnx, onnxmltools, ONNX Runtime and skops take seconds to import (7.5 s measured on
the shared 2-core machine), time that packaging the winner would otherwise spend after
the search. The search's trials run in native code that releases the GIL, so a thread
importing them meanwhile costs the search little.
"""

from __future__ import annotations

import importlib
import threading
import time

_MODULES = (
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "onnxmltools.convert.lightgbm.operator_converters.LightGbm",
    "skops.io",
    "loopml.packaging",
)
_done = threading.Event()
_lock = threading.Lock()
_started = False
_started_at = 0.0
# While the import still runs past its usual time, this much of it is still expected: on
# the loaded machine the thread, competing with the search for the GIL, took 10-11 s.
MIN_LEFT_S = 1.0


def _import_all() -> None:
    try:
        for name in _MODULES:
            importlib.import_module(name)
    except Exception:  # packaging will import them itself and report the failure there
        return
    finally:
        _done.set()


def warm_packaging() -> None:
    """Start importing the packaging libraries in a daemon thread (once per process)."""
    global _started, _started_at
    with _lock:
        if _started:
            return
        _started = True
        _started_at = time.monotonic()
    threading.Thread(target=_import_all, name="loopml-warm-packaging", daemon=True).start()


def import_left_s(full_s: float) -> float:
    """The seconds importing the packaging libraries may still take, of ``full_s`` in
    all: none once done; else what is left of ``full_s`` since the import started, and
    never less than ``MIN_LEFT_S`` (``skops.io`` alone took 7.7 s once on a busy machine,
    after the search had run for 8 s). Counting all of ``full_s`` until the import was
    done ended 20 s searches at 8.6 s with the import a second from its end (issue 38)."""
    if _done.is_set():
        return 0.0
    if not _started:
        return full_s
    return max(MIN_LEFT_S, full_s - (time.monotonic() - _started_at))
