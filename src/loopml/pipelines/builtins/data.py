"""Data built-ins: ``snapshot``, ``validate``, ``transform``, ``labelled`` and ``split``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loopml.core.contracts import parse_contract
from loopml.core.datasets import SplitSpec
from loopml.core.errors import ValidationError
from loopml.core.transforms import parse_table_version
from loopml.pipelines._step import StepContext
from loopml.pipelines.builtins._common import parse_model


def snapshot(ctx: StepContext, **params: Any) -> dict[str, Any]:
    """Snapshot ``from`` (a table or one SELECT) as the next version of ``dataset``.

    Snapshotting unchanged content returns the existing version, so a retry after a crash
    never makes a second copy.
    """
    from loopml.data.datasets import create_version

    split = params.get("split")
    made = create_version(
        ctx.store,
        ctx.artifacts,
        ctx.project,
        params["dataset"],
        params["from"],
        description=params.get("description") or "",
        split=None if split is None else parse_model(SplitSpec, split, "split"),
        actor=ctx.actor,
    )
    ctx.log.info(
        "dataset %s@%d: %d rows (%s)",
        made.dataset,
        made.version,
        made.row_count,
        "new version" if made.created else "unchanged, reused",
    )
    return {
        "dataset": f"{made.dataset}@{made.version}",
        "rows": made.row_count,
        "created": made.created,
    }


def validate(
    ctx: StepContext,
    table: str,
    contract: dict[str, Any] | None = None,
    fail: bool = True,
    require_contract: bool = False,
) -> dict[str, Any]:
    """Check every row of a table version against its contract (or ``contract``).

    A table without a contract passes with nothing checked (``contract: none``), unless
    ``require_contract`` says a contract must be there.
    """
    from loopml.data import contracts, lake

    name, version = parse_table_version(table)
    own = lake.get_table(ctx.store, ctx.artifacts, ctx.project, name).contract
    if contract is None and own is None:
        if require_contract:
            raise ValidationError(
                f"table {name!r} has no validation contract and require_contract is true: set "
                f"one with `loopml tables contract set {name} FILE.yaml`, or give `contract`",
                details={"table": table},
            )
        ctx.log.warning("no contract: table %s has none and none was given; nothing checked", name)
        empty = {"rows_checked": 0.0, "rows_failed": 0.0, "rules_failed": 0.0}
        return {"table": table, "report": empty, "passed": True, "contract": "none"}
    rules = parse_contract(contract if contract is not None else own)
    rows = lake.read_dataset(ctx.store, ctx.artifacts, ctx.project, name, version).to_table()
    report, _, _ = contracts.check(rules, rows, existing_row_count=0, table=name)
    summary = {
        "rows_checked": float(report.rows_checked),
        "rows_failed": float(report.rows_failed),
        "rules_failed": float(len(report.failures)),
    }
    for failure in report.failures:
        ctx.log.warning(
            "rule %s failed on %d rows: %s", failure.rule, failure.count, failure.message
        )
    if not report.passed and fail:
        first = report.failures[0]
        raise ValidationError(
            f"table {table} fails its contract: {len(report.failures)} rule(s), "
            f"{report.rows_failed} of {report.rows_checked} rows; first: {first.message}",
            details={"table": table, "rows_failed": report.rows_failed},
        )
    return {
        "table": table,
        "report": summary,
        "passed": report.passed,
        "contract": "given" if contract is not None else "table",
    }


def transform(
    ctx: StepContext,
    name: str,
    sql: str | None = None,
    into: str | None = None,
    mode: str | None = None,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Apply a transform (defining or changing it with what is given)."""
    from loopml.data import transforms

    run = transforms.apply(
        ctx.store,
        ctx.artifacts,
        ctx.project,
        name,
        sql=sql,
        into=into,
        mode=mode,
        actor=ctx.actor,
        lake_settings=ctx.settings.lake,
        timeout_s=timeout_s,
    )
    return {"table": f"{run.output_table}@{run.output_version}", "rows": run.rows}


def labelled(
    ctx: StepContext, deployment: str, target: str = "label", since: str | None = None
) -> dict[str, Any]:
    """Refresh ``deployment``'s labelled predictions; the version and what to train on: the
    answers made since ``since`` (``drift``: the onset of its newest labelled drift; a
    time; empty: all)."""
    from loopml.data.sources import materialize
    from loopml.predictions.labelled import drift_onset, refresh

    moment = _since(since)
    if since == "drift":
        moment = drift_onset(ctx.store, ctx.project, deployment)
        ctx.log.info(
            "since the drift's onset: %s",
            moment.isoformat() if moment else "none yet, so every labelled answer",
        )
    made = refresh(
        ctx.store,
        ctx.artifacts,
        ctx.project,
        deployment,
        target=target,
        actor=ctx.actor,
        lake_settings=ctx.settings.lake,
        since=moment,
    )
    training = made.run.rows
    if moment is not None:
        count = f"SELECT count(*) AS n FROM ({made.training_sql})"  # noqa: S608
        counted = materialize(ctx.store, ctx.artifacts, ctx.project, count)
        training = int(counted.table.column("n")[0].as_py())
        if not training:
            raise ValidationError(
                f"no labelled answer of {deployment!r} was made since {moment.isoformat()} "
                f"({made.run.rows} before it): send their labels, or set since to an earlier "
                "time (empty: all)",
                details={"field": "since", "since": moment.isoformat(), "rows": made.run.rows},
            )
    ctx.log.info(
        "%s: %d labelled rows, %d to train on (transform run %s)",
        made.table,
        made.run.rows,
        training,
        made.run.id,
    )
    return {
        "table": made.table,
        "training": made.training_sql,
        "rows": made.run.rows,
        "training_rows": training,
        "since": moment.isoformat() if moment else "",
    }


def _since(since: str | None) -> datetime | None:
    """``since`` as a time (UTC when it names no zone); ``None`` for empty or ``drift``."""
    if not since or since == "drift":
        return None
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise ValidationError(
            f"invalid since {since!r}: expected drift, an ISO 8601 time "
            "(2026-11-27T14:38:00Z) or empty for every labelled answer",
            details={"field": "since"},
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def split(
    ctx: StepContext,
    dataset: str,
    eval_fraction: float = 0.2,
    seed: int = 0,
    stratify: str | None = None,
) -> dict[str, Any]:
    """Freeze a split onto a dataset version (the same spec again changes nothing)."""
    from loopml.data.datasets import split_version

    spec = parse_model(
        SplitSpec,
        {"eval_fraction": eval_fraction, "seed": seed, "stratify": stratify},
        "split",
    )
    done = split_version(ctx.store, ctx.artifacts, ctx.project, dataset, spec, actor=ctx.actor)
    assert done.split is not None
    return {"dataset": f"{done.dataset}@{done.version}", "eval_hash": done.split.eval_hash}
