"""Counts from every server on one database, not only the lease holder's.

The prediction log and the feedback are in the lake, which every server reads; failed
requests, requests per caller and replica samples are in each server's memory (its gateway,
its replicas). Each round every monitor turns its own into window states
(``gateway_states``: the counts since its previous round, the samples of this round, in the
smallest window of that moment). The lease holder adds its own to its windows; a monitor
that does not hold the lease leaves them in a row of its own (``publish``: one insert per
round with something counted, never an update, so servers never contend), and the holder
takes every such row at the start of its round (``collect``, deleting what it read) and adds
them too, each in the window it was counted in.

A holder that dies between taking the rows and committing its windows loses them, as it loses
its own counts since its previous round.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from loopml.core.resources import ReplicaSample
from loopml.monitor.resources import sample_state
from loopml.monitor.windows import Piece, empty_state, merge_state
from loopml.store import MetadataStore
from loopml.store import monitor as rows

log = logging.getLogger("loopml.monitor")
CountKey = tuple[str, str, str, str, str]
Share = dict[tuple[str, str], dict[Piece, dict[str, Any]]]
"""Window states by (project, deployment), then (model, version, window start)."""


def _add(share: Share, project: str, name: str, key: Piece, state: dict[str, Any]) -> None:
    pieces = share.setdefault((project, name), {})
    pieces[key] = merge_state(pieces[key], state) if key in pieces else state


def gateway_states(
    counts: Mapping[str, Mapping[CountKey, float]],
    samples: list[ReplicaSample],
    restarts: dict[tuple[str, str, str], int],
    now: datetime,
    grain: int,
) -> Share:
    """This server's counts (``errors`` by status, ``callers`` by caller: what its gateway
    counted since the previous round) and replica samples as states of the window of
    ``grain`` seconds holding ``now`` (the smallest the monitor writes, usage-only ones
    included; larger windows take it by its start). ``restarts`` is each replica slot's
    restart count at its previous sample, updated here."""
    start = int(now.timestamp()) // grain * grain
    share: Share = {}
    for field_name, found in counts.items():
        for (project, name, model, version, what), count in found.items():
            state = empty_state()
            state["usage"][field_name] = {what: int(count)}
            key = (model, int(version) if version.isdigit() else 0, start)
            _add(share, project, name, key, state)
    for sample in samples:
        slot = (sample.project, sample.deployment, sample.slot)
        # Restarts since the slot's previous sample (all of them the first time it is seen:
        # they happened on this server, before monitoring saw the slot).
        restarted = max(sample.restarts - restarts.get(slot, 0), 0)
        restarts[slot] = sample.restarts
        state = empty_state()
        state["resources"] = {sample.slot: sample_state(sample, restarted, now.timestamp())}
        key = (sample.model, sample.version, start)
        _add(share, sample.project, sample.deployment, key, state)
    return share


def fold(into: Share, other: Share) -> None:
    """Add ``other``'s states to ``into``."""
    for (project, name), pieces in other.items():
        for key, state in pieces.items():
            _add(into, project, name, key, state)


_SEQ = itertools.count()


def publish(store: MetadataStore, holder_id: str, share: Share) -> None:
    """Leave this round's share for the lease holder (nothing when it is empty)."""
    if not share:
        return
    entries = [
        [project, name, model, version, start, state]
        for (project, name), pieces in share.items()
        for (model, version, start), state in pieces.items()
    ]
    with store.session() as session:
        rows.add_share(session, holder_id, next(_SEQ), {"pieces": entries})


def collect(store: MetadataStore) -> Share:
    """Every share other monitors left, taken (deleted) and added up."""
    with store.session() as session:
        found = rows.take_shares(session)
    share: Share = {}
    for value in found:
        for project, name, model, version, start, state in value.get("pieces", []):
            _add(share, project, name, (model, int(version), int(start)), state)
    return share
