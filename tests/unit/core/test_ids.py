"""Identifiers: ``fast_id`` has ``new_id``'s shape, does not repeat, and a forked child
draws other ids than its parent."""

from __future__ import annotations

import os
import re

import pytest

from loopml.core.ids import fast_id, new_id

_HEX32 = re.compile(r"[0-9a-f]{32}")


def test_fast_ids_are_shaped_as_new_ids_and_do_not_repeat() -> None:
    drawn = [fast_id() for _ in range(50_000)]
    assert all(_HEX32.fullmatch(i) for i in drawn)
    assert _HEX32.fullmatch(new_id())
    assert len(set(drawn)) == len(drawn)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(fast_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    parent = {fast_id() for _ in range(5)}
    with os.fdopen(read, "rb") as pipe:
        child = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    assert len(child) == 5
    assert not parent & child
