"""``delete`` commands ask first: no keeps everything, yes (or ``--yes``) deletes and says
what went, in one line."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from loopml.cli import main

from .conftest import COLUMNS, Platform

PROJECT = "tidy"


def _cli(platform: Platform, *args: str, answer: str | None = None) -> Result:
    env = {"LOOPML_CLIENT_URL": platform.url, "COLUMNS": str(COLUMNS), "LOOPML_PROJECT": PROJECT}
    return CliRunner().invoke(main.app, list(args), env=env, input=answer)


def test_delete_asks_then_deletes_and_says_what_went(platform: Platform) -> None:
    with platform.client() as client:
        client.projects.create(PROJECT)
        client.tables.append_records(PROJECT, "customers", [{"customer": "c1", "spend": 1.5}])
        client.transforms.apply(PROJECT, "copy", sql="SELECT * FROM customers", into="copied")

    kept = _cli(platform, "tables", "delete", "customers", answer="n\n")
    assert kept.exit_code == 1, kept.output
    assert "delete table 'customers' of project 'tidy' and all its data? [y/N]" in kept.output
    assert "deleted" not in kept.output
    with platform.client() as client:
        assert [t.name for t in client.tables.list(PROJECT)] == ["copied", "customers"]

    asked = _cli(platform, "tables", "delete", "customers", answer="y\n")
    assert asked.exit_code == 0, asked.output
    assert asked.stdout.splitlines()[-1] == "deleted table customers"

    forced = _cli(platform, "transforms", "delete", "copy", "--yes")
    assert forced.exit_code == 0, forced.output
    assert forced.stdout == "deleted transform copy\n"
    with platform.client() as client:
        assert [t.name for t in client.tables.list(PROJECT)] == ["copied"]
        assert client.transforms.list(PROJECT) == []
