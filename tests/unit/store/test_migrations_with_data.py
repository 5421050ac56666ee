"""Every migration from its parent with data in it, on SQLite and PostgreSQL: a row in each
table that exists at the parent (made up from the reflected table, foreign keys pointing at
their parents' rows), then the migration, then every row is still there."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loopml.store._migrate import script_directory
from tests.upgrade_rows import counts, engine_for, fill_every_table, upgrade_to


def _revisions() -> list[tuple[str, str | None]]:
    """(revision, parent), oldest first."""
    scripts = script_directory()
    return [
        (script.revision, script.down_revision)  # type: ignore[misc]
        for script in reversed(list(scripts.walk_revisions()))
    ]


def test_the_migrations_form_one_line() -> None:
    revisions = _revisions()
    assert revisions[0][1] is None
    assert [parent for _, parent in revisions[1:]] == [r for r, _ in revisions[:-1]]


@pytest.mark.timeout(600)
def test_each_migration_keeps_the_rows_its_parent_held(database_url: str) -> None:
    revisions = _revisions()
    upgrade_to(database_url, revisions[0][0])
    for round_, (revision, parent) in enumerate(revisions[1:], start=1):
        assert parent is not None
        engine = engine_for(database_url)
        try:
            with engine.begin() as conn:
                before = fill_every_table(conn, round_)
        finally:
            engine.dispose()
        upgrade_to(database_url, revision)
        after = counts(database_url)
        kept = {name: after.get(name) for name in before}
        assert kept == before, f"{parent} -> {revision}"


def test_step_runs_queued_before_0020_count_one_cpu(database_url: str) -> None:
    # A NULL here would match no `cpus <= free` claim: old queued steps would wait forever.
    upgrade_to(database_url, "0019_mlflow_compat")
    engine = engine_for(database_url)
    try:
        with engine.begin() as conn:
            filled = fill_every_table(conn)
        assert filled["pipeline_step_runs"] >= 1
        upgrade_to(database_url, "0020_step_resources")
        with engine.begin() as conn:
            cpus = conn.execute(sa.text("SELECT cpus FROM pipeline_step_runs")).scalars().all()
    finally:
        engine.dispose()
    assert cpus
    assert set(cpus) == {1.0}
