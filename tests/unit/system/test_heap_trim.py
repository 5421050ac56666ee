"""The server's heap trim (``loopml.system.heap``): freed pages that glibc kept in its
heap go back to the system once the process has grown by the step, and not before."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from collections.abc import Callable, Iterator

import pytest

from loopml.system.heap import HeapTrim, limit_arenas, private_bytes

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim and /proc/self/statm are glibc's and Linux's",
)

_MB = 1 << 20
CHUNK = 100 * 1024
"""Under glibc's mmap threshold (128 KiB), so each chunk comes from the heap, not mmap."""


@pytest.fixture
def libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("c"))
    lib.malloc.restype = ctypes.c_void_p
    lib.malloc.argtypes = [ctypes.c_size_t]
    lib.free.argtypes = [ctypes.c_void_p]
    # What earlier tests of this process freed and glibc kept goes back first: the chunks
    # below would reuse those resident pages without the process growing (census run 35,
    # random order: "the process had grown by the step, yet nothing was trimmed").
    lib.malloc_trim(0)
    return lib


@pytest.fixture
def free_in_the_heap(libc: ctypes.CDLL) -> Iterator[Callable[[], int]]:
    """Writes about 48 MB and frees it below one chunk still held, so glibc keeps the pages
    (free() gives back only the top of a heap); returns the bytes freed."""
    kept: list[int] = []

    def free() -> int:
        chunks = []
        for _ in range(480):
            address = libc.malloc(CHUNK)
            assert address, "malloc failed"
            ctypes.memset(address, 1, CHUNK)
            chunks.append(address)
        kept.append(chunks.pop())
        for address in chunks:
            libc.free(address)
        return len(chunks) * CHUNK

    yield free
    for address in kept:
        libc.free(address)


def test_the_freed_heap_goes_back_once_grown_by_the_step(
    free_in_the_heap: Callable[[], int],
) -> None:
    trim = HeapTrim(step_bytes=8 * _MB)
    freed = free_in_the_heap()
    before = private_bytes()
    given = trim()
    after = private_bytes()
    assert before is not None
    assert after is not None
    assert given is not None, "the process had grown by the step, yet nothing was trimmed"
    # 47 MB of written pages were freed; most of them must leave the process.
    assert given >= freed // 2, (
        f"gave back {given / _MB:.1f} MB of {freed / _MB:.1f} MB freed "
        f"(private {before / _MB:.1f} -> {after / _MB:.1f} MB)"
    )
    assert trim.given_back == given


def test_nothing_is_trimmed_below_the_step(free_in_the_heap: Callable[[], int]) -> None:
    trim = HeapTrim(step_bytes=1024 * _MB)
    freed = free_in_the_heap()
    before = private_bytes()
    assert trim() is None
    after = private_bytes()
    assert before is not None
    assert after is not None
    # Not trimmed: the freed pages are still the process's (nothing else here frees 24 MB).
    assert after > before - freed // 2, (before, after)


def test_a_step_of_zero_never_trims(free_in_the_heap: Callable[[], int]) -> None:
    trim = HeapTrim(step_bytes=0)
    free_in_the_heap()
    assert trim() is None
    assert trim.given_back == 0


def test_the_arena_cap_is_set_on_glibc_and_zero_leaves_glibcs_own() -> None:
    # 1,024 is over glibc's own cap for any machine this runs on (8 per core): setting it
    # changes nothing for the rest of this test process.
    assert limit_arenas(1024) is True
    assert limit_arenas(0) is False
