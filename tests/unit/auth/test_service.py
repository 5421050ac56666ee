"""The auth service against a real SQLite store: what a login does to the stored hash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from loopml.auth import passwords, service
from loopml.core.errors import UnauthenticatedError
from loopml.store import MetadataStore, users

PASSWORD = "a long admin passphrase"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upgrade()
    yield store
    store.dispose()


def _stored(store: MetadataStore, name: str) -> str:
    with store.session() as session:
        found = users.password_hash(session, name)
    assert found is not None
    return found[1]


def test_a_login_rehashes_a_password_hashed_with_older_parameters(store: MetadataStore) -> None:
    # A hash made before the parameters changed (a cheaper one, as an older release had).
    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    assert passwords.needs_rehash(old)
    with store.session() as session:
        users.create(session, "ada", old, platform_admin=False, actor="test")

    with pytest.raises(UnauthenticatedError):
        service.check_password(store, "ada", "a wrong passphrase")
    assert _stored(store, "ada") == old  # a failed login changes nothing

    assert service.check_password(store, "ada", PASSWORD).name == "ada"
    new = _stored(store, "ada")
    assert new != old
    assert not passwords.needs_rehash(new)
    assert passwords.verify_password(new, PASSWORD)
    # The next login keeps the fresh hash.
    service.check_password(store, "ada", PASSWORD)
    assert _stored(store, "ada") == new
