from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import AlreadyExistsError, ConflictError, NotFoundError, ValidationError


def test_default_project_exists(client: Client) -> None:
    assert client.projects.get("default").name == "default"


def test_create_get_update_list_delete(client: Client) -> None:
    created = client.projects.create("churn", "predict who leaves")
    assert created.name == "churn"
    assert client.projects.get("churn") == created
    updated = client.projects.update("churn", description="v2")
    assert updated.description == "v2"
    assert updated.updated_at >= created.updated_at
    assert [p.name for p in client.projects.iter()] == ["churn", "default"]
    client.projects.delete("churn")
    with pytest.raises(NotFoundError, match="churn"):
        client.projects.get("churn")


def test_duplicate_name_is_a_conflict(client: Client) -> None:
    client.projects.create("fraud")
    with pytest.raises(AlreadyExistsError, match="fraud"):
        client.projects.create("fraud")


def test_create_with_exist_ok_gets_the_existing_project(client: Client) -> None:
    first = client.projects.create("fraud", "card fraud")
    again = client.projects.create("fraud", "another text", exist_ok=True)
    assert again == first
    assert client.projects.create("fresh", exist_ok=True).name == "fresh"


@pytest.mark.parametrize(
    "name", ["Bad", "a b", "../x", "x\n", "1abc", "", "a" * 64, "x;rm -rf", "<img src=x>"]
)
def test_bad_names_are_refused_with_the_rule(client: Client, name: str) -> None:
    with pytest.raises(ValidationError) as err:
        client.projects.create(name)
    assert "lowercase" in err.value.message or "at most 63" in err.value.message


def test_default_project_cannot_be_deleted(client: Client) -> None:
    with pytest.raises(ConflictError, match="default project"):
        client.projects.delete("default")


def test_deleting_a_missing_project_is_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.projects.delete("ghost")


def test_pagination_returns_every_project_once(client: Client) -> None:
    names = {f"p{i:03d}" for i in range(23)}
    for name in names:
        client.projects.create(name)
    pages = []
    cursor = None
    while True:
        page = client.projects.list(limit=5, cursor=cursor)
        pages.append(page)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    seen = [p.name for page in pages for p in page.items]
    assert len(pages) == 5
    assert len(seen) == len(set(seen)) == 24
    assert set(seen) == names | {"default"}


def test_unknown_fields_and_bad_limits_are_422(http: TestClient) -> None:
    extra = http.post("/api/v1/projects", json={"name": "ok", "owner": "me"})
    assert extra.status_code == 422
    assert extra.json()["error"]["code"] == "validation_error"
    assert "owner" in extra.json()["error"]["message"]
    huge = http.get("/api/v1/projects", params={"limit": 10**9})
    assert huge.status_code == 422


def test_project_changes_are_events(client: Client) -> None:
    client.projects.create("audit")
    client.projects.update("audit", description="d")
    client.projects.delete("audit")
    types = [e.type for e in client.events.iter(project="audit")]
    assert types == ["project.created", "project.updated", "project.deleted"]
    assert all(e.actor == "anonymous" for e in client.events.iter(project="audit"))
