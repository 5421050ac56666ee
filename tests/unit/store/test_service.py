"""``in_session``: a store function as a service's method, one transaction a call."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from loopml.core.errors import ValidationError
from loopml.store import MetadataStore, events
from loopml.store.service import StoreService, in_session


def _append_then_fail(session: Session, type_: str) -> None:
    """Append an event, then refuse."""
    events.append(session, type=type_, project="default", subject="s", payload={}, actor="test")
    raise ValidationError("refused after the write")


class Feed(StoreService):
    append = in_session(events.append)
    append_then_fail = in_session(_append_then_fail)
    list_ = in_session(events.list_)


def test_each_call_commits_its_own_transaction(store: MetadataStore) -> None:
    feed = Feed(store)
    feed.append(type="probe.one", project="default", subject="s", payload={}, actor="test")
    assert [e.type for e in feed.list_(type="probe.*").items] == ["probe.one"]


def test_a_call_that_raises_leaves_nothing_written(store: MetadataStore) -> None:
    feed = Feed(store)
    with pytest.raises(ValidationError, match="refused after the write"):
        feed.append_then_fail("probe.failed")
    assert feed.list_(type="probe.*").items == []


def test_the_method_keeps_the_store_function_s_name_and_docstring(store: MetadataStore) -> None:
    method = Feed(store).append_then_fail
    assert method.__name__ == "_append_then_fail"
    assert method.__doc__ == "Append an event, then refuse."
    assert Feed.append.fn is events.append  # on the class: the descriptor itself
