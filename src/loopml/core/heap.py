"""Garbage-collector settings for the long-running servers (``loopml up``, model servers) and
stream consumers' processes."""

from __future__ import annotations

import gc

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
