"""``loopml models``: the model registry; ``gc`` is wired as the top-level ``loopml gc``."""

from __future__ import annotations

import typer

from loopml.cli._context import project_option, state
from loopml.cli._output import (
    as_json,
    check_output,
    console,
    listing,
    output_option,
    table,
    when,
    wide_option,
)

app = typer.Typer(
    help="Registered models: versions, aliases, lineage; garbage collection.",
    no_args_is_help=True,
)
alias_app = typer.Typer(help="Point aliases (champion, ...) at versions.", no_args_is_help=True)
app.add_typer(alias_app, name="alias")

PROJECT = project_option("The project that owns the models.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


@app.command("list")
def list_models(
    ctx: typer.Context,
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List a project's models."""
    shape = check_output("json" if json_out else output, wide)
    with state(ctx).client() as client:
        items = list(client.models.iter(project=project))
    rows = [
        (
            m.name,
            m.latest_version,
            ", ".join(f"{a}={v}" for a, v in m.aliases.items()),
            when(m.updated_at),
            m.description,
        )
        for m in items
    ]
    columns = ["name", "latest", "aliases", "updated", "description"]
    listing(columns, rows, shape, required=3, records=[m.model_dump(mode="json") for m in items])


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model's name."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Show one model: description, tags, aliases and newest version."""
    with state(ctx).client() as client:
        model = client.models.get(name, project=project)
    if json_out:
        as_json(model.model_dump(mode="json"))
        return
    rows = [
        ("name", model.name),
        ("project", model.project),
        ("description", model.description),
        ("latest version", model.latest_version),
        ("aliases", ", ".join(f"{a} -> {v}" for a, v in model.aliases.items())),
        ("tags", ", ".join(f"{k}={v}" for k, v in model.tags.items())),
        ("created", when(model.created_at)),
    ]
    table(None, ["field", "value"], rows)


@app.command("versions")
def versions(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model's name."),
    project: str = PROJECT,
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000, help="Newest N versions."),
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List a model's versions, newest first."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        items = client.models.versions(name, project=project, limit=limit).items
    rows = [
        (v.version, v.status, ", ".join(v.aliases), when(v.created_at), v.run_id, v.status_message)
        for v in items
    ]
    columns = ["version", "status", "aliases", "created", "run", "message"]
    records = [v.model_dump(mode="json") for v in items]
    listing(columns, rows, shape, required=3, records=records)


@app.command("register")
def register(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model to add a version to (created if missing)."),
    run: str = typer.Option(..., "--run", "-r", help="The run that logged the model."),
    path: str = typer.Option("model", "--path", help="Where the run logged it."),
    description: str = typer.Option("", "--description", "-d"),
    project: str = PROJECT,
) -> None:
    """Register a run's logged model as the next version; verifies every file."""
    with state(ctx).client() as client:
        version = client.models.register_version(
            name, run_id=run, path=path, description=description, project=project
        )
    if version.status == "READY":
        console.print(f"registered [bold]{name}/{version.version}[/] (READY)")
        return
    console.print(f"[red]{name}/{version.version} FAILED[/]: {version.status_message}")
    raise typer.Exit(1)


@app.command("lineage")
def lineage(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME/VERSION, NAME@ALIAS or NAME (newest READY)."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Show where a version came from: its run and what the run consumed."""
    with state(ctx).client() as client:
        version = client.models.resolve(ref, project=project)
        found = client.models.lineage(version.model, version.version, project=project)
    if json_out:
        as_json(found.model_dump(mode="json"))
        return
    console.print(
        f"[bold]{version.model}/{version.version}[/] ({version.status}) <- run "
        f"{found.run.id} '{found.run.name}' ({found.run.status})"
    )
    if not found.inputs:
        console.print(
            f"inputs: none recorded - run {found.run.id} read no dataset it told loopml "
            "about (a run started with loopml.start_run(inputs=[SNAPSHOT_ID]), "
            "`loopml train --dataset` or a pipeline records them); drift is judged against "
            "the sample the model was logged with, if any (`loopml models reference` shows "
            "it)",
            highlight=False,
        )
        return
    rows = [(i.kind, i.ref, ", ".join(u.ref for u in i.upstream)) for i in found.inputs]
    table("inputs", ["kind", "ref", "from"], rows)


@app.command("reference")
def reference(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME/VERSION, NAME@ALIAS or NAME (newest READY)."),
    table_ref: str | None = typer.Option(
        None,
        "--table",
        "-t",
        help="Build the reference from this lake table (NAME or NAME@VERSION) instead.",
    ),
    target: str | None = typer.Option(
        None,
        "--target",
        help="With --table: the table's label column, to calibrate a classifier's "
        "probabilities on, or measure a regressor's errors on (the estimate before labels "
        "reads either).",
    ),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Show a version's reference profile (what drift is judged against), or with --table
    build it from a lake table that holds the model's input columns."""
    if target is not None and table_ref is None:
        raise typer.BadParameter(
            "--target measures on a named table's labels: give --table too",
            param_hint="--target",
        )
    with state(ctx).client() as client:
        version = client.models.resolve(ref, project=project)
        if table_ref is None:
            found = client.monitoring.reference(version.model, version.version, project=project)
        else:
            found = client.monitoring.set_reference(
                version.model, version.version, table=table_ref, target=target, project=project
            )
    if json_out:
        as_json(found)
        return
    name = f"{version.model}/{version.version}"
    profile = found.get("profile")
    if found["status"] != "ready" or not profile:
        console.print(f"[bold]{name}[/]: drift off ({found['reason']})")
        return
    console.print(
        f"[bold]{name}[/]: reference from {found['source']} ({profile['origin']}, "
        f"{profile['rows']} rows)"
    )
    rows = [(c, f["kind"], f.get("rows", "")) for c, f in profile["features"].items()]
    table("columns", ["column", "kind", "rows"], rows)


@alias_app.command("set")
def alias_set(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model's name."),
    alias: str = typer.Argument(..., help="The alias, such as 'champion'."),
    version: int = typer.Argument(..., min=1, help="The READY version to point at."),
    project: str = PROJECT,
) -> None:
    """Point ALIAS at VERSION (create or move it)."""
    with state(ctx).client() as client:
        client.models.set_alias(name, alias, version, project=project)
    console.print(f"{name}@{alias} -> [bold]{version}[/]")


@alias_app.command("rm")
def alias_rm(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model's name."),
    alias: str = typer.Argument(..., help="The alias to remove."),
    project: str = PROJECT,
) -> None:
    """Remove ALIAS."""
    with state(ctx).client() as client:
        client.models.remove_alias(name, alias, project=project)
    console.print(f"removed alias [bold]{name}@{alias}[/]")


def gc(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be freed."),
    json_out: bool = JSON,
) -> None:
    """Delete the artifacts of deleted projects and runs (server-wide)."""
    with state(ctx).client() as client:
        report = client.models.gc(dry_run=dry_run)
    if json_out:
        as_json(report.model_dump(mode="json"))
        return
    verb = "would free" if dry_run else "freed"
    console.print(
        f"{verb} {report.objects} objects, {report.bytes} bytes in {len(report.prefixes)} "
        f"orphaned folders; {report.temporary_removed} temporary files removed"
    )


# The gate's commands live in their own module; they belong under ``loopml models``.
from loopml.cli import gate as _gate  # noqa: E402

app.add_typer(_gate.policy_app, name="policy")
app.command("gate")(_gate.gate)
app.command("promote")(_gate.promote)
app.command("evaluate")(_gate.evaluate)
app.command("evaluations")(_gate.evaluations)
