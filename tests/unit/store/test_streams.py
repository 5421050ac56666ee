"""Stream rows: one consumer holds a stream at a time; commit states only move forward."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from loopml.core.clock import utcnow
from loopml.core.stream_sources import parse_source
from loopml.core.streams import StreamConfig, StreamState, StreamStats
from loopml.store import MetadataStore, projects
from loopml.store import streams as stream_rows
from loopml.store.orm import StreamRow


def _stream(store: MetadataStore) -> str:
    config = StreamConfig(
        source=parse_source("nats://127.0.0.1:4222", "a.*"), table="t", dead_letter="t__dead"
    )
    with store.session() as session:
        if "p" not in [p.name for p in projects.list_(session).items]:
            projects.create(session, "p", actor="test")
        return stream_rows.create(session, "p", "s", config, actor="test").id


def test_one_consumer_holds_a_stream_until_it_lets_go_or_goes_quiet(store: MetadataStore) -> None:
    sid = _stream(store)
    with store.session() as session:
        assert stream_rows.claim(session, sid, "a", stale_s=6) is None
        assert stream_rows.claim(session, sid, "b", stale_s=6) == "a"
        assert stream_rows.report(session, sid, StreamStats(status="running"), "b") is False
        assert stream_rows.report(session, sid, StreamStats(status="running"), "a") is True
        stream_rows.release(session, sid, "a")
        assert stream_rows.claim(session, sid, "b", stale_s=6) is None
        assert stream_rows.holds(session, sid, "b")
        # b is SIGKILLed: its heartbeat goes stale and c takes over
        session.execute(update(StreamRow).values(heartbeat_at=utcnow() - timedelta(seconds=7)))
        assert stream_rows.claim(session, sid, "c", stale_s=6) is None
        assert not stream_rows.holds(session, sid, "b")


def test_an_older_state_never_replaces_a_newer_one(store: MetadataStore) -> None:
    sid = _stream(store)

    def state(gen: int) -> StreamState:
        return StreamState(stream_id=sid, gen=gen, done=[[0, 1, gen]], messages=gen, dead_letters=0)

    with store.session() as session:
        stream_rows.record_states(session, [state(2), state(3)], utcnow())
        stream_rows.record_states(session, [state(1)], utcnow())
        assert stream_rows.committed(session, sid).gen == 3
        assert stream_rows.committed(session, sid).done == [[0, 1, 3]]
        stream_rows.record_states(
            session,
            [StreamState(stream_id="gone", gen=9, done=[], messages=0, dead_letters=0)],
            utcnow(),
        )


def test_reports_and_commits_leave_updated_at_alone(store: MetadataStore) -> None:
    sid = _stream(store)
    with store.session() as session:
        made = stream_rows.by_id(session, sid).updated_at
    state = StreamState(stream_id=sid, gen=1, done=[[0, 1, 1]], messages=1, dead_letters=0)
    with store.session() as session:
        assert stream_rows.claim(session, sid, "a", stale_s=6) is None
        assert stream_rows.report(session, sid, StreamStats(status="running"), "a") is True
        stream_rows.record_states(session, [state], utcnow())
        stream_rows.release(session, sid, "a")
    with store.session() as session:
        found = stream_rows.by_id(session, sid)
        assert (found.updated_at, found.stats.commits) == (made, 1)
        assert found.stats.heartbeat_at is not None
        assert found.stats.heartbeat_at > made
        stream_rows.set_paused(session, "p", "s", True, actor="test")
    with store.session() as session:
        assert stream_rows.by_id(session, sid).updated_at > made  # a definition change
