"""Projects repository on a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from loopml.core.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from loopml.store import MetadataStore, events, projects
from loopml.store.orm import ProjectRow


def test_create_get_update_delete(store: MetadataStore) -> None:
    with store.session() as session:
        created = projects.create(session, "churn", description="Who leaves", actor="ada")
    assert created.name == "churn"
    assert created.description == "Who leaves"
    assert created.created_at.tzinfo is not None
    assert created.updated_at == created.created_at
    with store.session() as session:
        assert projects.get(session, "churn") == created
    with store.session() as session:
        updated = projects.update(session, "churn", description="Who churns", actor="ada")
    assert updated.description == "Who churns"
    assert updated.id == created.id
    assert updated.created_at == created.created_at
    assert updated.updated_at > created.updated_at
    with store.session() as session:
        assert projects.get(session, "churn") == updated
        projects.delete(session, "churn", actor="ada")
    with (
        store.session() as session,
        pytest.raises(NotFoundError, match="project 'churn' not found"),
    ):
        projects.get(session, "churn")


def test_duplicate_name_is_already_exists(store: MetadataStore) -> None:
    with store.session() as session:
        projects.create(session, "churn", actor="ada")
    with (
        pytest.raises(AlreadyExistsError, match="project 'churn' already exists"),
        store.session() as session,
    ):
        projects.create(session, "churn", actor="bob")
    with store.session() as session:
        assert [e.actor for e in events.list_(session, type="project.created").items] == [
            "system",
            "ada",
        ]


def test_create_racing_another_writer_is_already_exists(store: MetadataStore) -> None:
    if store.dialect == "sqlite":
        _sqlite_second_writer_waits_then_conflicts(store)
        return

    # Another process creates the same name after our existence check and before our
    # insert: the database's unique index decides, and the loser's event vanishes too.
    def other_writer_wins(*_: object) -> None:
        with store.session() as other:
            projects.create(other, "race", actor="winner")

    def lose_the_race() -> None:
        with store.session() as session:
            event.listen(session, "before_flush", other_writer_wins, once=True)
            projects.create(session, "race", actor="loser")

    with pytest.raises(AlreadyExistsError, match="project 'race' already exists"):
        lose_the_race()
    with store.session() as session:
        feed = events.list_(session, project="race").items
    assert [(e.type, e.actor) for e in feed] == [("project.created", "winner")]


def _sqlite_second_writer_waits_then_conflicts(store: MetadataStore) -> None:
    # SQLite transactions begin IMMEDIATE: the interleaving above cannot happen. A second
    # writer waits for the first to commit (within busy_timeout), then sees its row.
    import threading
    import time

    holding = threading.Event()

    def winner() -> None:
        with store.session() as session:
            projects.create(session, "race", actor="winner")
            holding.set()
            time.sleep(0.3)

    thread = threading.Thread(target=winner)
    thread.start()
    assert holding.wait(5)
    started = time.monotonic()
    with (
        pytest.raises(AlreadyExistsError, match="project 'race' already exists"),
        store.session() as session,
    ):
        projects.create(session, "race", actor="loser")
    waited = time.monotonic() - started
    thread.join()
    # It waited for the winner's commit (the winner held it 0.3 s), then saw its row: the
    # AlreadyExistsError above, not busy_timeout's ServiceUnavailableError.
    assert waited > 0.1, waited
    with store.session() as session:
        feed = events.list_(session, project="race").items
    assert [(e.type, e.actor) for e in feed] == [("project.created", "winner")]


def test_integrity_errors_from_any_write_are_mapped(store: MetadataStore) -> None:
    with pytest.raises(AlreadyExistsError) as caught, store.session() as session:
        session.add(ProjectRow(name="default", description=""))
    assert caught.value.code == "already_exists"
    assert caught.value.status == 409
    # Other integrity violations (here NOT NULL) are conflicts, not duplicates.
    with pytest.raises(ConflictError) as conflict, store.session() as session:
        session.add(ProjectRow(name=None, description="x"))
    assert conflict.value.code == "conflict"
    with store.session() as session:
        assert [p.name for p in projects.list_(session).items] == ["default"]


@pytest.mark.parametrize("name", ["Bad", "a b", "../x", "x\n", "a" * 64, "", "1abc", "a/b"])
def test_bad_names_are_refused(store: MetadataStore, name: str) -> None:
    with store.session() as session:
        with pytest.raises(ValidationError):
            projects.create(session, name, actor="ada")
        with pytest.raises(ValidationError):
            projects.get(session, name)
        with pytest.raises(ValidationError):
            projects.update(session, name, description="", actor="ada")
        with pytest.raises(ValidationError):
            projects.delete(session, name, actor="ada")
    with store.session() as session:
        assert [p.name for p in projects.list_(session).items] == ["default"]


def test_longest_valid_name_is_accepted(store: MetadataStore) -> None:
    name = "a" * 63
    with store.session() as session:
        projects.create(session, name, actor="ada")
    with store.session() as session:
        assert projects.get(session, name).name == name


def test_bad_description_and_actor_are_refused(store: MetadataStore) -> None:
    with store.session() as session:
        with pytest.raises(ValidationError, match="description"):
            projects.create(session, "x", description="d" * 4001, actor="ada")
        with pytest.raises(ValidationError, match="actor"):
            projects.create(session, "x", actor="")
    with store.session() as session, pytest.raises(NotFoundError):
        projects.get(session, "x")


def test_default_project_cannot_be_deleted(store: MetadataStore) -> None:
    with (
        pytest.raises(ConflictError, match="the default project cannot be deleted"),
        store.session() as session,
    ):
        projects.delete(session, "default", actor="ada")
    with store.session() as session:
        assert projects.get(session, "default").name == "default"


def test_missing_project(store: MetadataStore) -> None:
    with store.session() as session:
        with pytest.raises(NotFoundError, match="project 'ghost' not found"):
            projects.update(session, "ghost", description="", actor="ada")
        with pytest.raises(NotFoundError, match="project 'ghost' not found"):
            projects.delete(session, "ghost", actor="ada")


def test_list_pages_cover_every_project_once(store: MetadataStore) -> None:
    # Names chosen so byte order and a locale's order differ ('-' vs letters).
    names = {f"p{i:02d}" for i in range(23)} | {"a-c", "ab", "a_b", "z"}
    with store.session() as session:
        for name in sorted(names):
            projects.create(session, name, actor="ada")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        with store.session() as session:
            page = projects.list_(session, limit=5, cursor=cursor)
        seen.extend(p.name for p in page.items)
        pages += 1
        assert len(page.items) <= 5
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert set(seen) == names | {"default"}
    assert len(seen) == len(names) + 1
    assert seen == sorted(seen)  # byte order on both dialects
    assert pages == 6


def test_list_last_page_exactly_full_has_no_next_cursor(store: MetadataStore) -> None:
    with store.session() as session:
        projects.create(session, "zz", actor="ada")
        page = projects.list_(session, limit=2)
    assert [p.name for p in page.items] == ["default", "zz"]
    assert page.next_cursor is None


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_list_limit_is_validated(store: MetadataStore, limit: int) -> None:
    with store.session() as session, pytest.raises(ValidationError, match="limit"):
        projects.list_(session, limit=limit)


def test_list_bad_cursor_is_validated(store: MetadataStore) -> None:
    with store.session() as session, pytest.raises(ValidationError, match="cursor"):
        projects.list_(session, cursor="' OR 1=1 --")


def test_operations_emit_events(store: MetadataStore) -> None:
    with store.session() as session:
        projects.create(session, "churn", actor="ada")
        projects.update(session, "churn", description="new", actor="bob")
        projects.delete(session, "churn", actor="cy")
    with store.session() as session:
        feed = events.list_(session, project="churn").items
    assert [(e.type, e.subject, e.project, e.actor) for e in feed] == [
        ("project.created", "churn", "churn", "ada"),
        ("project.updated", "churn", "churn", "bob"),
        ("project.deleted", "churn", "churn", "cy"),
    ]
    assert feed[1].payload == {"description": "new"}


def test_failed_transaction_leaves_nothing(store: MetadataStore) -> None:
    class Boom(Exception):
        pass

    def create_then_fail() -> None:
        with store.session() as session:
            projects.create(session, "churn", actor="ada")
            raise Boom

    with pytest.raises(Boom):
        create_then_fail()
    with store.session() as session:
        with pytest.raises(NotFoundError):
            projects.get(session, "churn")
        assert events.list_(session, project="churn").items == []


def test_name_can_be_reused_after_delete(store: MetadataStore) -> None:
    with store.session() as session:
        first = projects.create(session, "churn", actor="ada")
        projects.delete(session, "churn", actor="ada")
        second = projects.create(session, "churn", actor="ada")
    assert first.id != second.id
