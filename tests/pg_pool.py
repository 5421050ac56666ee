"""Migrated PostgreSQL databases for the tests, reused instead of made anew for each test.

A test used to get ``CREATE DATABASE ... TEMPLATE`` of a migrated database and a ``DROP``
after it: 0.3 to 0.6 s of a loaded machine for each of about 940 tests, most of it the
server copying the template's 7.5 MB of system catalogs through its WAL. A test now gets a
database of this worker's pool, made from the template the first time. When the test ends
the pool takes it back only if it can make it as good as new:

- every other connection to it is ended and it is **renamed**, so a thread or process the
  test left behind, holding its URL, cannot reach it again (exactly as after a ``DROP``);
- its **schema** must still be the template's (relations, columns, types, functions,
  schemas; a test that migrated, altered or added one loses its database, which is dropped);
- its **rows** are deleted and the template's own (the default project) copied back, and its
  **sequences** set to the template's values, in one transaction with the foreign keys'
  triggers off (``session_replication_role = replica``; the tests connect as a superuser).

Anything that goes wrong on the way back drops the database; the next test makes another.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_SCHEMA = """
select md5(coalesce(string_agg(item, ',' order by item), '')) from (
  select 'r:' || n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' ||
         coalesce((select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                     || case when a.attnotnull then ' nn' else '' end, ';' order by a.attnum)
                   from pg_attribute a where a.attrelid = c.oid and a.attnum > 0
                   and not a.attisdropped), '') as item
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp)'
  union all
  select 't:' || n.nspname || '.' || t.typname from pg_type t
  join pg_namespace n on n.oid = t.typnamespace
  where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp)'
  union all
  select 'f:' || n.nspname || '.' || p.proname from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp)'
  union all
  select 'n:' || nspname from pg_namespace
  where nspname not like 'pg_temp%' and nspname not like 'pg_toast_temp%'
  union all
  select 'c:' || conname from pg_constraint where connamespace = 'public'::regnamespace
) as items
"""
_TABLES = "select tablename from pg_tables where schemaname = 'public' order by tablename"
_SEQUENCES = "select sequencename from pg_sequences where schemaname = 'public'"


@dataclass
class _Snapshot:
    """What a migrated database holds: its schema's fingerprint, its tables' rows (as
    ``COPY`` text) and its sequences' positions."""

    schema: str
    tables: list[str]
    rows: dict[str, bytes]
    sequences: dict[str, tuple[int, bool]]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _snapshot(url: str) -> _Snapshot:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        schema = str(conn.execute(_SCHEMA).fetchone()[0])  # type: ignore[index]
        tables = [str(row[0]) for row in conn.execute(_TABLES)]
        rows: dict[str, bytes] = {}
        for table in tables:
            data = bytearray()
            with conn.cursor().copy(f"COPY {_quoted(table)} TO STDOUT") as copy:
                for chunk in copy:
                    data += chunk
            if data:
                rows[table] = bytes(data)
        sequences = {}
        for (name,) in conn.execute(_SEQUENCES):
            last, called = conn.execute(
                f"select last_value, is_called from {_quoted(name)}"
            ).fetchone()  # type: ignore[misc]
            sequences[str(name)] = (int(last), bool(called))
    return _Snapshot(schema, tables, rows, sequences)


@dataclass
class PostgresPool:
    """This test process's migrated databases: ``template`` (migrated once), and those free
    to hand out, as good as a new copy of it."""

    admin_url: str
    template: str
    free: list[str] = field(default_factory=list)
    _snapshot: _Snapshot | None = None

    def url(self, name: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{name}"

    @contextmanager
    def database(self) -> Iterator[str]:
        """A migrated database for one test; yields its URL."""
        name = self.free.pop() if self.free else self._created()
        try:
            yield self.url(name)
        finally:
            self._take_back(name)

    def close(self) -> None:
        for name in self.free:
            self._drop(name)
        self.free.clear()

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.admin_url, autocommit=True)

    def _created(self) -> str:
        name = f"loopml_t_{uuid.uuid4().hex[:12]}"
        with self._admin() as admin:
            admin.execute(f"CREATE DATABASE {_quoted(name)} TEMPLATE {_quoted(self.template)}")
        return name

    def _drop(self, name: str) -> None:
        with self._admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")

    def _take_back(self, name: str) -> None:
        renamed = self._renamed(name)
        if renamed is None:
            self._drop(name)
            return
        try:
            clean = self._reset(renamed)
        except Exception:
            clean = False
        if clean:
            self.free.append(renamed)
        else:
            self._drop(renamed)

    def _renamed(self, name: str) -> str | None:
        """``name`` under a new name once no one else is connected to it; None if another
        connection came back each time."""
        import psycopg

        fresh = f"loopml_t_{uuid.uuid4().hex[:12]}"
        with self._admin() as admin:
            for _ in range(5):
                admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = %s and pid <> pg_backend_pid()",
                    (name,),
                )
                try:
                    admin.execute(f"ALTER DATABASE {_quoted(name)} RENAME TO {_quoted(fresh)}")
                except psycopg.errors.ObjectInUse:
                    continue
                return fresh
        return None

    def _reset(self, name: str) -> bool:
        """Make ``name`` the template's copy again; False if its schema is no longer the
        template's (it is then dropped, not reset)."""
        import psycopg

        if self._snapshot is None:
            self._snapshot = _snapshot(self.url(self.template))
        snap = self._snapshot
        with psycopg.connect(self.url(name)) as conn:
            if str(conn.execute(_SCHEMA).fetchone()[0]) != snap.schema:  # type: ignore[index]
                return False
            conn.execute("SET session_replication_role = replica")
            for table in snap.tables:
                conn.execute(f"DELETE FROM {_quoted(table)}")
            for table, data in snap.rows.items():
                with conn.cursor().copy(f"COPY {_quoted(table)} FROM STDIN") as copy:
                    copy.write(data)
            for sequence, (last, called) in snap.sequences.items():
                conn.execute("select setval(%s, %s, %s)", (_quoted(sequence), last, called))
            conn.commit()
        return True
