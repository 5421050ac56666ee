"""The warehouse engine on Arrow datasets built here: results, paging, limits, the sandbox."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from loopml.core.errors import LoopmlError, NotFoundError, QueryTimeoutError, ValidationError
from loopml.data._sandbox import QueryLimits, open_connection
from loopml.data.warehouse import WarehouseLimits, rewrite_versions, run_query

SECRET = "canary-7f3a9c-do-not-leak"
CHURN = pa.table({"id": list(range(25)), "label": [i % 2 for i in range(25)]})


class Lake:
    """A resolver over fixed tables: ``churn`` has versions 0 (3 rows) and 1 (25 rows)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int | None]] = []

    def __call__(self, name: str, version: int | None) -> pads.Dataset:
        self.asked.append((name, version))
        if name == "churn" and version in (None, 1):
            return pads.dataset(CHURN)
        if name == "churn" and version == 0:
            return pads.dataset(CHURN.slice(0, 3))
        if name == "fresh":  # created, nothing written yet: no columns
            return pads.dataset(pa.table({}))
        raise NotFoundError(f"no table {name!r} (version {version}) in this project")


@pytest.fixture
def lake() -> Lake:
    return Lake()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "secret.csv"
    path.write_text(f"token\n{SECRET}\n")
    return path


def test_a_query_answers_rows_and_typed_columns(lake: Lake) -> None:
    result = run_query("SELECT label, count(*) AS n FROM churn GROUP BY label ORDER BY 1", lake)
    assert result.table.to_pylist() == [{"label": 0, "n": 13}, {"label": 1, "n": 12}]
    assert result.columns == [("label", "BIGINT"), ("n", "BIGINT")]
    assert result.next_offset is None
    assert result.tables == ["churn"]


def test_pages_walk_an_ordered_query_without_gaps_or_repeats(lake: Lake) -> None:
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = run_query("SELECT id FROM churn ORDER BY id DESC;", lake, limit=10, offset=offset)
        assert page.table.num_rows <= 10
        seen += page.table.column("id").to_pylist()
        offset = page.next_offset
    assert seen == list(range(24, -1, -1))


def test_a_past_version_is_read_by_name_at_version(lake: Lake) -> None:
    result = run_query(
        "SELECT (SELECT count(*) FROM churn@0) AS old, (SELECT count(*) FROM churn) AS now", lake
    )
    assert result.table.to_pylist() == [{"old": 3, "now": 25}]
    assert sorted(result.tables) == ["churn", "churn@0"]
    assert run_query('SELECT count(*) AS n FROM "churn@0"', lake).table.to_pylist() == [{"n": 3}]


def test_version_rewrite_leaves_strings_and_comments_alone() -> None:
    sql = "SELECT 'churn@3' AS s -- churn@4\nFROM churn@3 JOIN Other@12 USING (id)"
    assert rewrite_versions(sql) == (
        'SELECT \'churn@3\' AS s -- churn@4\nFROM "churn@3" JOIN "other@12" USING (id)'
    )
    assert rewrite_versions("SELECT x @ 3, churn @3") == "SELECT x @ 3, churn @3"


def test_only_the_referenced_tables_are_registered(lake: Lake) -> None:
    run_query("WITH c AS (SELECT * FROM churn) SELECT count(*) FROM c", lake)
    assert lake.asked == [("churn", None)]
    for name in ("other", "pg_class", "duckdb_tables"):
        with pytest.raises(NotFoundError, match=name):
            run_query(f"SELECT * FROM {name}", lake)
    # DuckDB reads this PRAGMA as a SELECT from a catalog view, which is never registered.
    with pytest.raises(NotFoundError, match="pragma_database_list"):
        run_query("PRAGMA database_list", lake)


def test_server_python_variables_are_not_visible(lake: Lake) -> None:
    server_secret = pa.table({"token": [SECRET]})  # noqa: F841 - a replacement scan's target
    with pytest.raises(LoopmlError) as caught:
        run_query("SELECT * FROM server_secret", lake)
    assert SECRET not in caught.value.message


def test_a_slow_query_is_stopped_at_its_time_limit(lake: Lake) -> None:
    with pytest.raises(QueryTimeoutError, match="time limit") as caught:
        run_query(
            "SELECT sum(a.range * b.range) FROM range(100000000) a, range(1000000) b",
            lake,
            timeout_s=0.5,
        )
    assert caught.value.code == "query_timeout"
    assert caught.value.status == 422


@pytest.mark.parametrize(
    ("limit", "offset", "timeout_s"),
    [(0, 0, 1), (100_001, 0, 1), (1, -1, 1), (1, 0, 0), (1, 0, 301)],
)
def test_limits_out_of_range_are_refused(
    lake: Lake, limit: int, offset: int, timeout_s: float
) -> None:
    with pytest.raises(ValidationError, match="expected"):
        run_query("SELECT 1", lake, limit=limit, offset=offset, timeout_s=timeout_s)


def test_a_result_over_the_byte_cap_is_refused(lake: Lake) -> None:
    with pytest.raises(ValidationError, match="fewer rows"):
        run_query(
            "SELECT repeat('x', 1000) FROM range(1000)",
            lake,
            limits=WarehouseLimits(max_result_bytes=100_000),
        )


def test_a_query_over_its_memory_budget_fails_without_spilling(lake: Lake) -> None:
    limits = WarehouseLimits(sandbox=QueryLimits(memory_limit="32MB", threads=1))
    with pytest.raises(ValidationError, match="failed"):
        run_query(
            "SELECT count(DISTINCT repeat('x', 50) || range) FROM range(5000000)",
            lake,
            limits=limits,
        )


def test_the_connection_configuration_is_locked() -> None:
    con = open_connection(QueryLimits())
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")
    assert con.execute("SELECT current_setting('enable_external_access')").fetchone() == (False,)


def _hostile(canary: Path, target: Path) -> list[tuple[str, str]]:
    """(query, the refused thing the error must name)."""
    c, t = canary, target
    return [
        (f"SELECT * FROM read_csv('{c}')", "read_csv"),
        (f"SELECT * FROM read_csv_auto('{c}')", "read_csv_auto"),
        (f"SELECT * FROM read_parquet('{c}')", "read_parquet"),
        (f"SELECT * FROM read_json('{c}')", "read_json"),
        (f"SELECT * FROM '{c}'", str(c)),
        (f"FROM '{c}'", str(c)),
        (f"SELECT * FROM read_text('{c}')", "read_text"),
        (f"SELECT * FROM read_blob('{c}')", "read_blob"),
        (f"SELECT * FROM glob('{c.parent}/*')", "glob"),
        (f"SELECT * FROM sniff_csv('{c}')", "sniff_csv"),
        (f"SELECT * FROM churn, LATERAL (SELECT * FROM read_text('{c}'))", "read_text"),
        (f"SELECT (SELECT content FROM read_text('{c}')) AS x", "read_text"),
        ("SELECT * FROM read_parquet('http://169.254.169.254/x.parquet')", "read_parquet"),
        ("SELECT * FROM 'https://example.com/data.csv'", "https://example.com/data.csv"),
        (f"COPY churn TO '{t}'", "COPY"),
        (f"COPY (SELECT * FROM churn) TO '{t}' (FORMAT csv)", "COPY"),
        (f"EXPORT DATABASE '{t}'", "EXPORT"),
        (f"ATTACH '{t}' AS x", "ATTACH"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("RESET enable_external_access", "RESET"),
        ("PRAGMA threads = 8", "PRAGMA"),
        (f"CREATE TABLE x AS SELECT * FROM read_csv('{c}')", "CREATE"),
        ("CREATE MACRO m() AS 1", "CREATE"),
        ("INSERT INTO churn VALUES (1, 1)", "INSERT"),
        ("DELETE FROM churn", "DELETE"),
        ("CALL pragma_version()", "CALL"),
        ("SELECT getenv('HOME')", "getenv"),
        ("SELECT current_setting('temp_directory')", "current_setting"),
        (f"SELECT * FROM query('SELECT * FROM read_text(''{c}'')')", "query"),
        ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
        ("SELECT * FROM information_schema.tables", "information_schema.tables"),
        ("SELECT * FROM system.main.churn", "system.main.churn"),
        ("SELECT * FROM churn AT (VERSION => 0)", "AT"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT 1; COPY churn TO 'x.csv'", "exactly one statement"),
        ("EXPLAIN SELECT 1", "EXPLAIN"),
    ]


def test_hostile_queries_are_refused_and_touch_no_file(
    lake: Lake, canary: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "stolen.csv"
    for query, refused in _hostile(canary, target):
        with pytest.raises(ValidationError) as caught:
            run_query(query, lake)
        message = caught.value.message
        assert refused in message, (query, message)
        assert SECRET not in message + str(caught.value.details), query
        assert not (tmp_path / "out").exists(), query
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv"]


def test_a_table_without_columns_yet_is_a_clear_error_not_a_crashed_worker(lake: Lake) -> None:
    with pytest.raises(ValidationError, match="table fresh has no columns yet") as e:
        run_query("SELECT count(*) FROM fresh", lake)
    assert e.value.details == {"table": "fresh"}
    # The worker pool is unharmed: the next query answers.
    assert run_query("SELECT count(*) AS n FROM churn", lake).table.to_pylist() == [{"n": 25}]


def test_a_process_that_ran_queries_exits_without_leaking_its_workers(tmp_path: Path) -> None:
    """The idle query workers are stopped at exit, their pipes closed: no ResourceWarning for
    a still-running subprocess or an unclosed pipe (a CLI or a script that ran SQL)."""
    import subprocess
    import sys

    script = tmp_path / "query.py"
    script.write_text(
        "import pyarrow as pa, pyarrow.dataset as pads\n"
        "from loopml.data.warehouse import run_query\n"
        "table = pads.dataset(pa.table({'a': [1, 2, 3]}))\n"
        "found = run_query('SELECT sum(a) AS s FROM t', lambda name, version: table)\n"
        "print(found.table.column(0).to_pylist())\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always::ResourceWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "6" in done.stdout
    assert "ResourceWarning" not in done.stderr, done.stderr
