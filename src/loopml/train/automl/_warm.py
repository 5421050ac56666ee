"""Importing the packaging libraries in the background while the search runs.

skl2onnx, onnxmltools, ONNX Runtime and skops take seconds to import (7.5 s measured on
the shared 2-core machine), time that packaging the winner would otherwise spend after
the search. The search's trials run in native code that releases the GIL, so a thread
importing them meanwhile costs the search little.
"""

from __future__ import annotations

import importlib
import threading

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
    global _started
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_import_all, name="loopml-warm-packaging", daemon=True).start()


def import_left_s(full_s: float) -> float:
    """The seconds importing the packaging libraries may still take, of ``full_s`` in
    all: none once done, else all of it. Pessimistic on purpose: on a busy machine the
    import thread competes with the search for the GIL, and ``skops.io`` alone took 7.7 s
    there once, after the search had run for 8 s."""
    return 0.0 if _done.is_set() else full_s
