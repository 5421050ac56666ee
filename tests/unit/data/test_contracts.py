"""Validation contracts on real lake tables: each rule, reject and quarantine, on both
metadata dialects and (for the write paths) a local folder and moto's S3 server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from loopml.core.contracts import Contract, load_contract, parse_contract, rejected_table
from loopml.core.errors import NotFoundError, ValidationError
from loopml.data import contracts, lake, validation
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events

ACTOR = "tester"


def _check(rules: dict[str, Any], batch: pa.Table, existing_rows: int = 0) -> list[str]:
    contract = parse_contract(rules)
    report, good, _ = contracts.check(contract, batch, existing_row_count=existing_rows)
    assert report.passed == (not report.failures)
    assert len(good) == batch.num_rows
    return sorted(f"{f.column}:{f.rule}" if f.column else f.rule for f in report.failures)


@pytest.mark.parametrize(
    ("rule", "passing", "failing"),
    [
        ({"type": "int64"}, [1, 2], ["a", "b"]),
        ({"type": "double"}, [1, 2], ["a", "b"]),
        ({"not_null": True}, [1, 2], [1, None]),
        ({"min": 0}, [0, 5], [-1, 5]),
        ({"max": 10}, [10, 5], [11, 5]),
        ({"allowed": ["a", "b"]}, ["a", None], ["a", "c"]),
        ({"regex": "^[a-z]+@x$"}, ["ab@x", None], ["ab@x", "AB"]),
        ({"unique": True}, [1, 2, None, None], [1, 1]),
    ],
)
def test_each_column_rule_passes_and_fails(
    rule: dict[str, Any], passing: list[Any], failing: list[Any]
) -> None:
    rules = {"columns": {"v": rule}}
    name = next(iter(rule))
    assert _check(rules, pa.table({"v": passing})) == []
    assert _check(rules, pa.table({"v": failing})) == [f"v:{name}"]


def test_row_bounds_count_the_table_after_the_append() -> None:
    rules = {"rows": {"min": 3, "max": 4}}
    assert _check(rules, pa.table({"v": [1]}), existing_rows=2) == []
    assert _check(rules, pa.table({"v": [1]}), existing_rows=1) == ["rows"]
    assert _check(rules, pa.table({"v": [1, 2]}), existing_rows=3) == ["rows"]


def test_freshness_is_the_newest_value_within_max_age() -> None:
    rules = {"freshness": {"column": "at", "max_age_s": 3600}}
    now = datetime.now(UTC)
    fresh = pa.table({"at": pa.array([now - timedelta(days=3), now], pa.timestamp("us", "UTC"))})
    stale = pa.table({"at": pa.array([now - timedelta(hours=2)], pa.timestamp("us"))})
    assert _check(rules, fresh) == []
    assert _check(rules, stale) == ["freshness"]
    assert _check(rules, pa.table({"other": [1]})) == ["freshness"]


def test_a_missing_column_and_a_bound_of_the_wrong_type() -> None:
    assert _check({"columns": {"v": {"not_null": True}}}, pa.table({"w": [1]})) == ["v:missing"]
    with pytest.raises(ValidationError, match="does not fit its type"):
        _check({"columns": {"v": {"min": "abc"}}}, pa.table({"v": [1]}))


def test_reasons_name_every_failed_rule_and_samples_are_bounded() -> None:
    contract = parse_contract({"columns": {"v": {"min": 0, "max": 5, "not_null": True}}})
    batch = pa.table({"v": [-1] * 8 + [None, 3]})
    report, good, reason = contracts.check(contract, batch, existing_row_count=0)
    assert good.to_pylist() == [False] * 9 + [True]
    assert reason.to_pylist() == ["v:min"] * 8 + ["v:not_null", None]
    failure = next(f for f in report.failures if f.rule == "min")
    assert (failure.count, failure.sample_rows, failure.sample_values) == (
        8,
        [0, 1, 2, 3, 4],
        [-1] * 5,
    )
    assert (report.rows_checked, report.rows_failed) == (10, 9)


def test_a_catastrophic_regex_finishes_fast_on_re2() -> None:
    batch = pa.table({"v": ["a" * 50_000 + "!"] * 20})
    started = time.monotonic()
    # Backtracking engines take exponential time to find that these do not match.
    assert _check({"columns": {"v": {"regex": "(a+)+$"}}}, batch) == ["v:regex"]
    assert _check({"columns": {"v": {"regex": "^(a|aa)+$"}}}, batch) == ["v:regex"]
    assert _check({"columns": {"v": {"regex": "^(a+)+!$"}}}, batch) == []
    took = time.monotonic() - started
    # margin: 0.054 s measured at load 4.5; 5 s is 90x (backtracking never finishes these).
    assert took < 5, f"three regexes over 1 MB took {took:.2f} s"


def test_contracts_are_strict_and_yaml_is_loaded_safely(tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    evil = f'columns: !!python/object/apply:os.system ["touch {canary}"]\n'
    with pytest.raises(ValidationError, match="not valid YAML"):
        load_contract(evil)
    assert not canary.exists()
    with pytest.raises(ValidationError, match="Extra inputs"):
        parse_contract({"columns": {"v": {"nullable": False}}})
    with pytest.raises(ValidationError, match="regex"):
        parse_contract({"columns": {"v": {"regex": "x" * 501}}})
    loaded = load_contract("columns:\n  id: {unique: true}\non_fail: quarantine\n")
    assert loaded == Contract.model_validate(
        {"columns": {"id": {"unique": True}}, "on_fail": "quarantine"}
    )
    with pytest.raises(ValidationError, match="63-character"):
        rejected_table("t" * 60)


def _ingest(store: MetadataStore, artifacts: ArtifactStore, data: pa.Table) -> Any:
    return lake.ingest_arrow(store, artifacts, "default", "sales", data, actor=ACTOR)


def _rows(store: MetadataStore, artifacts: ArtifactStore, table: str) -> list[dict[str, Any]]:
    data = lake.read_dataset(store, artifacts, "default", table).to_table()
    return sorted(data.to_pylist(), key=lambda r: str(r))


RULES = {
    "columns": {
        "id": {"unique": True, "not_null": True},
        "amount": {"min": 0, "max": 100},
        "status": {"allowed": ["new", "paid"]},
    }
}


def test_reject_writes_nothing_and_stores_the_report(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _ingest(store, artifacts, pa.table({"id": [1], "amount": [5.0], "status": ["new"]}))
    validation.set_contract(store, "default", "sales", RULES, actor=ACTOR)
    bad = pa.table({"id": [2, 1], "amount": [5.0, 500.0], "status": ["paid", "lost"]})
    with pytest.raises(ValidationError) as caught:
        _ingest(store, artifacts, bad)
    report = caught.value.details["report"]
    assert (report["passed"], report["rows_failed"], report["version"]) == (False, 1, None)
    rules = {(f["column"], f["rule"]) for f in report["failures"]}
    assert rules == {("id", "unique"), ("amount", "max"), ("status", "allowed")}
    assert lake.get_table(store, artifacts, "default", "sales").version == 0
    _ingest(store, artifacts, pa.table({"id": [2], "amount": [6.0], "status": ["paid"]}))
    listed = validation.reports(store, "default", "sales").items
    assert [(r.passed, r.version) for r in listed] == [(True, 1), (False, None)]
    assert listed[1].id == report["id"]
    with store.session() as session:
        failed = events.list_(session, type="validation.failed").items
    assert [(e.subject, e.payload["report"]) for e in failed] == [("sales", report["id"])]


def test_quarantine_splits_rows_and_creates_the_rejected_table(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _ingest(store, artifacts, pa.table({"id": [1], "amount": [5.0], "status": ["new"]}))
    validation.set_contract(
        store, "default", "sales", {**RULES, "on_fail": "quarantine"}, actor=ACTOR
    )
    batch = pa.table(
        {
            "id": [2, 1, None, 3, 4],
            "amount": [1.0, 2.0, 3.0, -4.0, 5.0],
            "status": ["paid", "new", "new", "lost", "new"],
        }
    )
    commit = _ingest(store, artifacts, batch)
    assert (commit.version, commit.rows_added) == (1, 2)
    assert _rows(store, artifacts, "sales") == _sorted(
        [(1, 5.0, "new"), (2, 1.0, "paid"), (4, 5.0, "new")]
    )
    rejected = _rows(store, artifacts, "sales__rejected")
    assert [(r["id"], r["_loopml_reason"]) for r in rejected] == [
        (1, "id:unique"),
        (3, "amount:min; status:allowed"),
        (None, "id:not_null"),
    ]
    (report,) = validation.reports(store, "default", "sales").items
    assert (report.passed, report.version, report.rejected_version) == (False, 1, 0)
    assert (report.rows_checked, report.rows_failed) == (5, 3)
    with store.session() as session:
        assert len(events.list_(session, type="validation.failed").items) == 1


def _sorted(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    keys = ("id", "amount", "status")
    return sorted((dict(zip(keys, r, strict=True)) for r in rows), key=lambda r: str(r))


def test_setting_a_contract_checks_what_it_can(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    with pytest.raises(NotFoundError):
        validation.set_contract(store, "default", "nope", {}, actor=ACTOR)
    long_name = "t" * 60
    lake.ingest_arrow(store, artifacts, "default", long_name, pa.table({"a": [1]}), actor=ACTOR)
    with pytest.raises(ValidationError, match="63-character"):
        validation.set_contract(store, "default", long_name, {"on_fail": "quarantine"}, actor=ACTOR)
    with pytest.raises(ValidationError, match="RE2"):
        validation.set_contract(
            store, "default", long_name, {"columns": {"a": {"regex": "(?<=x)y"}}}, actor=ACTOR
        )
    validation.set_contract(store, "default", long_name, {"rows": {"max": 1}}, actor=ACTOR)
    assert validation.get_contract(store, "default", long_name).rows is not None
    validation.delete_contract(store, "default", long_name, actor=ACTOR)
    with pytest.raises(NotFoundError, match="no validation contract"):
        validation.get_contract(store, "default", long_name)
