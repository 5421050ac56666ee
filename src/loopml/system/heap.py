"""The heap of the long-running servers (``loopml up``, model servers) and stream consumers'
processes: garbage-collector settings (``settle``), and for the platform process its C heap
after a burst of work (``limit_arenas``, ``HeapTrim``).

glibc's malloc gives each thread that allocates while another holds the lock an arena of its
own, up to 8 per core (16 here, for a server pool of 40 threads), keeps what a thread freed
in its arena for the next allocation, and returns pages to the system only from the top of
each heap. After a burst of ingest, queries and refused requests, the platform process kept
tens of MB of freed pages that way (``bench/server_memory.py``, docs/operations.md, Memory).

- ``limit_arenas`` caps the arenas (``M_ARENA_MAX``, ``server.malloc_arenas``) before the
  server's threads start.
- ``HeapTrim`` calls ``malloc_trim(0)``, which gives back every free page of every arena,
  from the housekeeping round once the process's own memory has grown by a step since it
  last ran: it holds each arena's lock while it walks it (8 ms of CPU for 40 MB freed in
  50 KB holes over 80 MB of heaps).

Where the C library is not glibc (musl, macOS) or ``/proc`` is absent, those two do nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

YOUNG_THRESHOLD = 20_000
"""Allocations between two young-generation collections (CPython's default is 700)."""


def settle() -> None:
    """Call once a server has loaded what it keeps for its whole life, before it serves.

    - ``gc.freeze()`` moves everything alive (the libraries, the app, the model) out of the
      cycle collector's sight, so a full collection no longer walks it: on the serving
      benchmark those collections had put tens of milliseconds on a busy server's p99.
    - A request allocates a few hundred objects and frees nearly all of them by reference
      counting; collecting the young generation every 700 allocations, as by default, means
      a collection every few requests that finds almost nothing. Every 20,000 cut the model
      server's CPU per request by about 7 % (62 to 57 microseconds) with the same memory.
    - A stream consumer's fetched batch of 5,000 entries allocates tens of thousands of
      objects, and at the default thresholds the collections it started walked every
      message in hand: more than half of the consumer's time (bench/streams.py, Redis:
      77,000 messages/s at the defaults, 174,000 settled).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


log = logging.getLogger("loopml.memory")

_STATM = Path("/proc/self/statm")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def private_bytes() -> int | None:
    """This process's resident memory not backed by files (``/proc/self/statm``: resident
    less shared pages), or None where there is no ``/proc``."""
    try:
        fields = _STATM.read_text().split()
    except OSError:
        return None
    return (int(fields[1]) - int(fields[2])) * _PAGE


_M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number for the most arenas (``malloc.h``)."""


def _glibc(function: str) -> Any | None:
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), function)
    except (OSError, AttributeError, TypeError):
        return None


def limit_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (0: leave glibc's own limit); true if set."""
    mallopt = _glibc("mallopt") if arenas > 0 else None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def _malloc_trim() -> Callable[[], None] | None:
    trim = _glibc("malloc_trim")
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrim:
    """Calls ``malloc_trim(0)`` when the process's private memory has grown by at least
    ``step_bytes`` since the last call (or since it was made); 0 turns it off."""

    def __init__(self, step_bytes: int) -> None:
        self.step = step_bytes
        self._trim = _malloc_trim() if step_bytes > 0 else None
        self._floor = private_bytes()
        self.given_back = 0
        """Bytes given back over the process's life, as ``private_bytes`` saw them."""
        self.trims = 0
        """Times it trimmed."""

    def __call__(self) -> int | None:
        """Trim if grown by the step: the bytes given back, else None."""
        if self._trim is None or self._floor is None:
            return None
        before = private_bytes()
        if before is None or before - self._floor < self.step:
            return None
        self._trim()
        after = private_bytes() or before
        self._floor = after
        freed = max(before - after, 0)
        self.given_back += freed
        self.trims += 1
        log.debug("gave back %.1f MB of freed heap (%.1f MB private now)", freed / 1e6, after / 1e6)
        return freed
