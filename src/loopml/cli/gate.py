"""``loopml models gate|promote|policy|evaluations``: the promotion gate from the shell."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli._context import project_option, state
from loopml.cli._output import (
    as_json,
    check_output,
    console,
    listing,
    output_option,
    shown_as_json,
    table,
    when,
    wide_option,
)
from loopml.core.errors import ValidationError
from loopml.core.gate import PROTECTED_ALIAS, GateResult, parse_policy
from loopml.core.refs import ModelRef

policy_app = typer.Typer(help="A model's gate policy.", no_args_is_help=True)

PROJECT = project_option("The project that owns the model.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")
SHOW_OUTPUT = typer.Option("table", "--output", "-o", help="table or json (the same as --json).")
REF = typer.Argument(..., help="The version, as NAME/VERSION (for example churn/3).")


def _version(text: str) -> tuple[str, int]:
    ref = ModelRef.parse(text)
    if ref.version is None:
        raise ValidationError(f"expected NAME/VERSION (for example churn/3), got {text!r}")
    return ref.name, ref.version


def _print_result(result: GateResult) -> None:
    verdict = "[green]PASSED[/]" if result.passed else "[red]FAILED[/]"
    if result.champion_version == result.version:
        console.print(f"{result.model}/{result.version} is the champion")
    versus = (
        f" against champion v{result.champion_version}"
        if result.champion_version and result.champion_version != result.version
        else ""
    )
    console.print(
        f"gate {verdict} for {result.model}/{result.version}{versus} "
        f"on eval set {result.eval_hash[:12]}: {result.summary}",
        highlight=False,
    )
    rows = [("pass" if r.passed else "FAIL", r.rule, r.metric, r.message) for r in result.rules]
    table(None, ["", "rule", "metric", "detail"], rows or [("pass", "-", "-", "no rules")])


def gate(
    ctx: typer.Context,
    ref: str = REF,
    project: str = PROJECT,
    json_out: bool = JSON,
    output: str = SHOW_OUTPUT,
) -> None:
    """Judge a version by its model's gate policy; exits 1 when the gate fails."""
    json_out = json_out or shown_as_json(output)
    name, version = _version(ref)
    with state(ctx).client() as client:
        result = client.models.gate(name, version, project=project)
    if json_out:
        as_json(result.model_dump(mode="json"))
    else:
        _print_result(result)
    if not result.passed:
        raise typer.Exit(1)


def promote(
    ctx: typer.Context,
    ref: str = REF,
    alias: str = typer.Option(PROTECTED_ALIAS, "--alias", help="The alias to move."),
    force: bool = typer.Option(
        False, "--force", help="Promote even though the gate did not pass (audited)."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why; required with --force."),
    project: str = PROJECT,
) -> None:
    """Point an alias (champion by default) at a version the gate passed."""
    name, version = _version(ref)
    if force and not (reason or "").strip():
        raise ValidationError("--force needs --reason: a forced promotion is audited")
    with state(ctx).client() as client:
        client.models.promote(
            name, version, alias=alias, force=force, reason=reason, project=project
        )
    note = " (forced, audited)" if force else ""
    console.print(f"{name}@{alias} -> [bold]{version}[/]{note}")


def evaluate(
    ctx: typer.Context,
    ref: str = REF,
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="NAME@VERSION whose frozen eval set to use (default: "
        "the one the version was trained on).",
    ),
    target: str | None = typer.Option(None, "--target", help="Default: the trained target."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Score a version on a dataset's frozen eval set and store the report."""
    name, version = _version(ref)
    with state(ctx).client() as client:
        stored = client.models.evaluate(
            name, version, dataset=dataset, target=target, project=project
        )
    if json_out:
        as_json(stored.model_dump(mode="json"))
        return
    report = stored.report
    console.print(
        f"{name}/{version} on {report.dataset or 'eval set'} "
        f"({report.eval_hash[:12]}, {report.rows} rows)"
    )
    rows = [(k, f"{v:.6g}") for k, v in sorted(report.metrics.items())]
    if report.latency is not None:
        rows.append(
            ("latency p50 / p99 (ms)", f"{report.latency.p50_ms:.3g} / {report.latency.p99_ms:.3g}")
        )
    table(None, ["metric", "value"], rows)


def evaluations(
    ctx: typer.Context,
    ref: str = REF,
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List a version's evaluation reports (one per eval set)."""
    shape = check_output(output, wide, json_out)
    name, version = _version(ref)
    with state(ctx).client() as client:
        items = client.models.evaluations(name, version, project=project)
    rows = [
        (
            i.report.eval_hash[:12],
            i.report.dataset or "",
            i.report.rows,
            ", ".join(f"{k}={v:.4g}" for k, v in sorted(i.report.metrics.items())),
            when(i.created_at),
        )
        for i in items
    ]
    columns = ["eval set", "dataset", "rows", "metrics", "when"]
    records = [i.model_dump(mode="json") for i in items]
    listing(columns, rows, shape, required=2, records=records)


@policy_app.command("set")
def policy_set(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model's name."),
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML or JSON policy."),
    project: str = PROJECT,
) -> None:
    """Set a model's gate policy from a YAML or JSON file."""
    policy = parse_policy(file.read_text(encoding="utf-8"))
    with state(ctx).client() as client:
        client.models.set_gate_policy(name, policy, project=project)
    console.print(f"gate policy of {name} set")


@policy_app.command("show")
def policy_show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model's name."),
    project: str = PROJECT,
) -> None:
    """Print a model's gate policy as JSON (the default one when it has none)."""
    with state(ctx).client() as client:
        as_json(client.models.gate_policy(name, project=project).model_dump(mode="json"))


@policy_app.command("rm")
def policy_rm(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model's name."),
    project: str = PROJECT,
) -> None:
    """Drop a model's gate policy: the default (beat the champion) applies again."""
    with state(ctx).client() as client:
        client.models.delete_gate_policy(name, project=project)
    console.print(f"gate policy of {name} removed")
