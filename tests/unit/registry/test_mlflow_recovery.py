"""Which PACKAGING versions a server takes over (``mlflow_recovery.orphaned``): a pure rule
over the package record's maker and when it was last seen."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

import pytest

from loopml.registry.mlflow_recovery import orphaned
from loopml.store.logged_models import PackagingClaim

NOW = datetime(2026, 1, 1, 12, 0, 0)
STALE = timedelta(minutes=10)
HERE = socket.gethostname()


def _orphaned(packager: str, seen_ago: timedelta | None, *, at_start: bool, alive: bool) -> bool:
    seen = None if seen_ago is None else NOW - seen_ago
    claim = PackagingClaim(packager, seen, "model", completed=False)
    return orphaned(
        claim,
        since=NOW - timedelta(hours=2),
        now=NOW,
        stale_after=STALE,
        at_start=at_start,
        alive=lambda pid: alive,
    )


@pytest.mark.parametrize(
    ("packager", "seen_ago", "at_start", "alive", "expected"),
    [
        # this process's own, during a round: never
        ("{self}", timedelta(hours=5), False, True, False),
        # this process's pid at start: an earlier process that had it
        ("{self}", timedelta(0), True, True, True),
        # this host, process gone / still running
        ("{here}:1234567", timedelta(0), False, False, True),
        ("{here}:1234567", timedelta(0), False, True, False),
        # another host: only by its last sign of life
        ("elsewhere:42", timedelta(minutes=9), False, False, False),
        ("elsewhere:42", timedelta(minutes=11), False, False, True),
        # a record from before the heartbeat: the version's own time
        ("elsewhere:42", None, False, False, True),
    ],
)
def test_a_version_is_taken_over_only_when_its_server_is_gone(
    packager: str, seen_ago: timedelta | None, at_start: bool, alive: bool, expected: bool
) -> None:
    # The test ids stay the same in every pytest-xdist worker: the pid and host are put in
    # here, not in the parameters.
    packager = packager.format(self=f"{HERE}:{os.getpid()}", here=HERE)
    assert _orphaned(packager, seen_ago, at_start=at_start, alive=alive) is expected
