"""The ``list`` command of a noun listed by project alone (``--project`` and the output
options): fetch the items, then print one row each as ``-o`` asks, or each in full as JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._context import state
from loopml.cli._output import Item, check_output, listing_of, output_option, wide_option

if TYPE_CHECKING:
    from loopml.client import Client


def add_list_command(
    app: typer.Typer,
    *,
    help: str,
    project_option: Any,
    json_option: Any,
    fetch: Callable[[Client, str], Sequence[Item]],
    columns: list[str],
    row: Callable[[Item], Sequence[Any]],
    required: int = 2,
) -> None:
    """Register ``list`` on ``app``.

    Args:
        help: the command's help.
        project_option: the noun's ``--project`` option; ``json_option`` its ``--json``.
        fetch: the project's items, through the client.
        columns: the table's columns, the ``required`` first always shown.
        row: the cells of one item.
    """

    @app.command("list", help=help)
    def list_(
        ctx: typer.Context,
        project: str = project_option,
        output: str = output_option(),
        wide: bool = wide_option(),
        json_out: bool = json_option,
    ) -> None:
        shape = check_output(output, wide, json_out)
        with state(ctx).client() as client:
            items = fetch(client, project)
        listing_of(items, columns, row, shape, required=required)
