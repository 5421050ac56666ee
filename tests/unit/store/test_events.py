"""Events repository: append-only feed, filters and keyset pagination on both databases."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from loopml.core.errors import ValidationError
from loopml.core.types import Event, Page
from loopml.store import MetadataStore, events


def append(
    store: MetadataStore, type_: str, *, project: str | None = "demo", **kwargs: Any
) -> Event:
    kwargs.setdefault("subject", "thing")
    kwargs.setdefault("actor", "ada")
    with store.session() as session:
        return events.append(session, type=type_, project=project, **kwargs)


def ids(page: Page[Event]) -> list[int]:
    return [e.id for e in page.items]


def all_ids(store: MetadataStore, **filters: Any) -> list[int]:
    with store.session() as session:
        return ids(events.list_(session, limit=1000, **filters))


def test_append_returns_what_a_read_gives(store: MetadataStore) -> None:
    payload = {"rows": 3, "tags": ("a", "b"), "nested": {"x": None, "ok": True}, "f": 1.5}
    appended = append(store, "table.appended", subject="sales", payload=payload)
    assert appended.payload == {
        "rows": 3,
        "tags": ["a", "b"],
        "nested": {"x": None, "ok": True},
        "f": 1.5,
    }
    assert appended.time.tzinfo is not None
    assert appended.time.utcoffset() == timedelta(0)
    with store.session() as session:
        read = events.list_(session, type="table.appended").items
    assert read == [appended]


def test_ids_ascend_and_feed_is_ascending(store: MetadataStore) -> None:
    appended = [append(store, "x.happened", subject=str(i)).id for i in range(5)]
    assert appended == sorted(appended)
    assert all_ids(store, type="x.happened") == appended


def test_type_filter_exact_and_prefix(store: MetadataStore) -> None:
    created = append(store, "model.created").id
    version = append(store, "model.version_created").id
    other = append(store, "modelx.created").id
    underscore = append(store, "model_a.created").id  # '_' must not act as a LIKE wildcard
    assert all_ids(store, type="model.created") == [created]
    assert all_ids(store, type="model.*") == [created, version]
    assert all_ids(store, type="modelx.*") == [other]
    assert all_ids(store, type="model_a.*") == [underscore]
    assert all_ids(store, type="model") == []
    assert all_ids(store, type="project.*") != []  # the default project's creation


def test_project_filter(store: MetadataStore) -> None:
    a = append(store, "x.y", project="alpha").id
    append(store, "x.y", project="beta")
    platform = append(store, "x.y", project=None).id
    assert all_ids(store, project="alpha") == [a]
    assert platform in all_ids(store, type="x.y")
    assert all_ids(store, project="nobody") == []


def test_since_filter_is_inclusive_and_takes_naive_as_utc(store: MetadataStore) -> None:
    first = append(store, "x.y")
    time.sleep(0.01)
    second = append(store, "x.y")
    assert all_ids(store, type="x.y", since=second.time) == [second.id]
    assert all_ids(store, type="x.y", since=first.time) == [first.id, second.id]
    naive = second.time.astimezone(UTC).replace(tzinfo=None)
    assert all_ids(store, type="x.y", since=naive) == [second.id]
    shifted = second.time.astimezone(timezone(timedelta(hours=5)))
    assert all_ids(store, type="x.y", since=shifted) == [second.id]
    assert all_ids(store, type="x.y", since=datetime.now(UTC) + timedelta(hours=1)) == []


def test_pagination_covers_every_event_once(store: MetadataStore) -> None:
    expected = {append(store, "page.item", subject=str(i)).id for i in range(37)}
    append(store, "page.other")
    seen: list[int] = []
    cursor: str | None = None
    while True:
        with store.session() as session:
            page = events.list_(session, type="page.*", limit=5, cursor=cursor)
        assert len(page.items) <= 5
        seen.extend(e.id for e in page.items if e.type == "page.item")
        if page.next_cursor is None:
            break
        assert page.next_cursor == str(page.items[-1].id)
        cursor = page.next_cursor
    assert seen == sorted(expected)
    assert set(seen) == expected


def test_newest_first_pages_towards_older_events(store: MetadataStore) -> None:
    expected = [append(store, "page.item", subject=str(i)).id for i in range(12)]
    seen: list[int] = []
    cursor: str | None = None
    while True:
        with store.session() as session:
            page = events.list_(session, type="page.*", limit=5, cursor=cursor, newest_first=True)
        seen.extend(e.id for e in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(expected, reverse=True)


def test_combined_filters(store: MetadataStore) -> None:
    append(store, "run.started", project="a")
    wanted = append(store, "run.finished", project="a").id
    append(store, "run.finished", project="b")
    assert all_ids(store, type="run.*", project="a", cursor=str(wanted - 1)) == [wanted]


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "", " 1", "99999999999999999999", "\u0661"])
def test_bad_cursor(store: MetadataStore, cursor: str) -> None:
    with store.session() as session, pytest.raises(ValidationError, match="cursor"):
        events.list_(session, cursor=cursor)


@pytest.mark.parametrize("limit", [0, 1001])
def test_bad_limit(store: MetadataStore, limit: int) -> None:
    with store.session() as session, pytest.raises(ValidationError, match="limit"):
        events.list_(session, limit=limit)


@pytest.mark.parametrize("bad_type", ["Project.created", "project.", ".x", "a..b", "", "x" * 101])
def test_bad_types_are_refused(store: MetadataStore, bad_type: str) -> None:
    with store.session() as session:
        with pytest.raises(ValidationError):
            events.append(session, type=bad_type, subject="s", project=None, actor="ada")
        with pytest.raises(ValidationError):
            events.list_(session, type=bad_type)


@pytest.mark.parametrize(
    "payload",
    [
        {"when": datetime.now(UTC)},
        {"x": float("nan")},
        {"x": object()},
        ["not", "a", "dict"],
        {"big": "x" * (64 * 1024)},
    ],
)
def test_bad_payloads_are_refused(store: MetadataStore, payload: Any) -> None:
    with store.session() as session, pytest.raises(ValidationError, match="payload"):
        events.append(session, type="x.y", subject="s", project=None, payload=payload, actor="a")
    assert all_ids(store, type="x.y") == []


def test_payload_at_the_limit_is_accepted(store: MetadataStore) -> None:
    filler = "x" * (64 * 1024 - len('{"big": ""}'))
    appended = append(store, "x.y", payload={"big": filler})
    with store.session() as session:
        assert events.list_(session, type="x.y").items[0].payload == appended.payload


@pytest.mark.parametrize(
    "field", [{"subject": ""}, {"subject": "s" * 301}, {"actor": ""}, {"project": "Bad"}]
)
def test_bad_fields_are_refused(store: MetadataStore, field: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        append(store, "x.y", **field)


def test_unicode_round_trips(store: MetadataStore) -> None:
    appended = append(store, "x.y", subject="модель-🚀", payload={"ключ": "значение ✓"})
    with store.session() as session:
        assert events.list_(session, type="x.y").items == [appended]


def test_events_outlive_their_project(store: MetadataStore) -> None:
    from loopml.store import projects

    with store.session() as session:
        projects.create(session, "gone", actor="ada")
    with store.session() as session:
        projects.delete(session, "gone", actor="ada")
    with store.session() as session:
        types = [e.type for e in events.list_(session, project="gone").items]
    assert types == ["project.created", "project.deleted"]


def test_no_update_or_delete_api() -> None:
    public = {name for name in dir(events) if not name.startswith("_")}
    assert not {"update", "delete", "remove", "purge"} & public


def test_events_become_visible_in_id_order(store: MetadataStore) -> None:
    # A tailer that has seen id N must never later find an id below N: a later append
    # waits for an earlier, still-open transaction that appended an event.
    import threading

    first_appended = threading.Event()
    ids: dict[str, int] = {}
    seen_by_fast: list[str] = []

    def slow_writer() -> None:
        with store.session() as session:
            event = events.append(session, type="x.slow", subject="s", project=None, actor="a")
            first_appended.set()
            time.sleep(0.4)
        ids["slow"] = event.id

    def fast_writer() -> None:
        assert first_appended.wait(10)
        with store.session() as session:
            event = events.append(session, type="x.fast", subject="s", project=None, actor="a")
            # Once the append returns, the slow writer's transaction has ended: its event is
            # visible to anyone, here from another connection, before this one commits.
            # (The order in which the two threads wake after the slow commit is the OS's.)
            with store.reading(), store.session() as other:
                seen_by_fast.extend(e.type for e in events.list_(other, project=None).items)
        ids["fast"] = event.id

    threads = [threading.Thread(target=slow_writer), threading.Thread(target=fast_writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert "x.slow" in seen_by_fast
    assert "x.fast" not in seen_by_fast
    assert ids["slow"] < ids["fast"]
