from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import ValidationError


def test_events_filter_by_type_project_and_time(client: Client) -> None:
    client.projects.create("a")
    client.projects.create("b")
    client.projects.update("a", description="x")
    created = list(client.events.iter(type="project.created"))
    assert {e.subject for e in created} >= {"a", "b"}
    assert {e.type for e in client.events.iter(type="project.*")} == {
        "project.created",
        "project.updated",
    }
    assert [e.type for e in client.events.iter(project="a")] == [
        "project.created",
        "project.updated",
    ]
    last = created[-1]
    later = list(client.events.iter(since=last.time + timedelta(microseconds=1)))
    assert all(e.time > last.time for e in later)
    assert [e.type for e in later] == ["project.updated"]


def test_events_page_in_order_without_gaps(client: Client) -> None:
    for i in range(12):
        client.projects.create(f"e{i:02d}")
    first = client.events.list(type="project.created", limit=5)
    assert len(first.items) == 5
    assert first.next_cursor
    everything = list(client.events.iter(type="project.created", page_size=5))
    ids = [e.id for e in everything]
    assert ids == sorted(ids)
    # the twelve, plus the default project created by the first upgrade
    assert len(ids) == len(set(ids)) == 13
    assert {e.subject for e in everything} == {f"e{i:02d}" for i in range(12)} | {"default"}


def test_bad_cursor_and_limit_are_refused(client: Client, http: TestClient) -> None:
    with pytest.raises(ValidationError):
        client.events.list(cursor="not-a-cursor")
    assert http.get("/api/v1/events", params={"limit": 0}).status_code == 422
    assert http.get("/api/v1/events", params={"since": "yesterday"}).status_code == 422


def test_since_takes_iso_8601_only(http: TestClient) -> None:
    assert http.get("/api/v1/events", params={"since": "0.5"}).status_code == 422
    assert http.get("/api/v1/events", params={"since": "1700000000"}).status_code == 422
    for since in ["2026-01-01", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+02:00"]:
        assert http.get("/api/v1/events", params={"since": since}).status_code == 200, since
