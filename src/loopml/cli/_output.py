"""Printing for the CLI: tables, JSON, and the one-line error."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from pydantic import BaseModel

Item = TypeVar("Item", bound="BaseModel")


class _Console(Console):
    """Rich's console, except that into a pipe or a file (no terminal, no ``COLUMNS`` set) a
    printed line is never wrapped: Rich folds at 80 columns there, which broke log lines and
    commands pasted from them. Tables still fit the width."""

    def print(self, *objects: Any, **options: Any) -> None:
        if options.get("soft_wrap") is None:
            options["soft_wrap"] = not self.is_terminal and "COLUMNS" not in os.environ
        super().print(*objects, **options)


console = _Console()
err_console = _Console(stderr=True)


def when(value: datetime) -> str:
    """A timestamp as the CLI shows it: local time to the second."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as a Rich table (``-`` for empty cells)."""
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*("-" if cell in (None, "") else str(cell) for cell in row))
    console.print(out)


def as_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout, for scripts (no colour, no wrapping)."""
    print(json.dumps(data, indent=2, default=str))


def shown_as_json(output: str) -> bool:
    """``-o`` of a command that shows one thing: ``table`` or ``json``."""
    if output not in ("table", "json"):
        from loopml.core.errors import ValidationError

        raise ValidationError(f"--output {output!r}: expected table or json")
    return output == "json"


OUTPUTS = ("table", "wide", "json", "csv")
_CELL_EXTRA = 3  # a Rich column's padding and border


def output_option() -> Any:
    """``-o/--output``: a table fitted to the terminal, every column, JSON or CSV."""
    import typer

    return typer.Option(
        "table",
        "--output",
        "-o",
        help="table (columns that fit the terminal), wide (every column), json or csv.",
    )


def wide_option() -> Any:
    """``--wide``: the same as ``-o wide``."""
    import typer

    return typer.Option(False, "--wide", help="Every column, however wide (same as -o wide).")


def check_output(output: str, wide: bool = False, json_out: bool = False) -> str:
    """The output format asked for; ``--wide`` is ``-o wide``, ``--json`` is ``-o json``.

    Raises:
        ValidationError: not one of ``OUTPUTS``.
    """
    from loopml.core.errors import ValidationError

    if output not in OUTPUTS:
        raise ValidationError(f"--output {output!r}: expected one of {', '.join(OUTPUTS)}")
    if json_out:
        return "json"
    return "wide" if wide and output == "table" else output


def fit_columns(
    columns: Sequence[str], rows: Sequence[Sequence[str]], width: int, required: int
) -> list[int]:
    """Which columns to show in ``width`` characters: the first ``required`` always, then
    the others in their order of importance (their order in ``columns``) while they fit."""
    natural = [_natural(columns, rows, i) for i in range(len(columns))]
    chosen = list(range(min(required, len(columns))))
    used = 1 + sum(natural[i] for i in chosen)
    for i in range(len(chosen), len(columns)):
        if used + natural[i] <= width:
            chosen.append(i)
            used += natural[i]
    return chosen


def _natural(columns: Sequence[str], rows: Sequence[Sequence[str]], i: int) -> int:
    """Column ``i``'s width unwrapped, padding and border included."""
    return max([len(columns[i])] + [len(row[i]) for row in rows]) + _CELL_EXTRA


def listing(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    output: str,
    *,
    required: int = 1,
    records: Sequence[Any] | None = None,
) -> None:
    """Print a list as a table that fits the terminal (dropping the least important columns
    and saying so), every column (``wide``), CSV, or JSON (``records`` when given, else one
    object per row).

    Args:
        columns: column names, the ``required`` first and then by importance.
        rows: one sequence of cells per item.
        output: one of ``OUTPUTS``.
        records: what ``json`` prints (the full objects), when richer than the rows.
    """
    if output == "json":
        as_json(
            records if records is not None else [dict(zip(columns, r, strict=True)) for r in rows]
        )
        return
    if output == "csv":
        _csv(columns, rows)
        return
    _table(columns, rows, output, required)


def listing_of(
    items: Sequence[Item],
    columns: Sequence[str],
    row: Callable[[Item], Sequence[Any]],
    output: str,
    *,
    required: int = 1,
) -> None:
    """``listing`` of the API's objects: one ``row`` of cells each, and JSON the objects in
    full."""
    records = [item.model_dump(mode="json") for item in items]
    listing(columns, [row(item) for item in items], output, required=required, records=records)


def _csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    import csv
    import sys

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if c is None else c for c in row] for row in rows])


def _table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], output: str, required: int
) -> None:
    cells = [["-" if c in (None, "") else str(c) for c in row] for row in rows]
    shown = list(range(len(columns)))
    width = console.width
    if output == "table":
        shown = fit_columns(columns, cells, width, required)
    else:
        # Every column at its natural width, past the terminal's edge if need be (as
        # ``kubectl -o wide``): a row stays one line for grep and for a pager's -S.
        width = max(width, 1 + sum(_natural(columns, cells, i) for i in shown))
    out = Table(header_style="bold")
    for i in shown:
        out.add_column(columns[i], overflow="fold")
    for row in cells:
        out.add_row(*(row[i] for i in shown))
    if width > console.width:
        # A console's print never goes past its own width: a wider one, on the same stream.
        Console(file=console.file, width=width, force_terminal=console.is_terminal).print(out)
    else:
        console.print(out)
    hidden = [columns[i] for i in range(len(columns)) if i not in shown]
    if hidden:
        err_console.print(
            f"({len(hidden)} more column(s): {', '.join(hidden)}; see them with --wide, "
            "-o csv or -o json)",
            highlight=False,
            soft_wrap=True,
        )
