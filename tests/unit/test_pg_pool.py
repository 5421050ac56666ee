"""tests/pg_pool.py: a database the pool hands out again is the template's copy, one a test
left connections to is out of their reach, and one whose schema a test changed is dropped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import POSTGRES_ADMIN_URL
from tests.pg_pool import PostgresPool, _snapshot

pytestmark = pytest.mark.postgres


@pytest.fixture
def pool(postgres_template: PostgresPool) -> Iterator[PostgresPool]:
    """A pool of its own over the suite's migrated template."""
    own = PostgresPool(POSTGRES_ADMIN_URL, postgres_template.template)
    yield own
    own.close()


def _exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        return bool(
            admin.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        )


def test_a_database_given_back_dirty_comes_back_as_the_template(pool: PostgresPool) -> None:
    import psycopg

    template = _snapshot(pool.url(pool.template))
    seeded = next(iter(template.rows))  # the default project's table
    assert template.sequences, "the migrated schema has no sequence to move"
    with pool.database() as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DELETE FROM "{seeded}"')
        for sequence in template.sequences:
            conn.execute("select nextval(%s)", (f'"{sequence}"',))
        dirty = _snapshot(url)
        assert dirty.rows != template.rows, "the test's change did not take"
        assert dirty.sequences != template.sequences, "the sequences did not move"
    assert len(pool.free) == 1, "a database whose schema is the template's is kept"
    with pool.database() as again:
        assert again != url, "a database is renamed before it is handed out again"
        clean = _snapshot(again)
    assert clean.rows == template.rows
    assert clean.sequences == template.sequences
    assert clean.schema == template.schema


def test_a_connection_left_open_cannot_reach_the_database_again(pool: PostgresPool) -> None:
    import psycopg

    with pool.database() as url:
        leaked = psycopg.connect(url, autocommit=True)
    with pytest.raises(psycopg.OperationalError):
        leaked.execute("select 1")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(url).close()


def test_a_database_whose_schema_changed_is_dropped(pool: PostgresPool) -> None:
    import psycopg

    with pool.database() as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE left_behind (id integer)")
    assert pool.free == [], "a changed schema must not be handed out again"
    assert not _exists(url.rpartition("/")[2])
