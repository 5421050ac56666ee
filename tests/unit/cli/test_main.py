"""The root command: every listed command resolves, and modules load only when used."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml.cli import main
from loopml.cli._summaries import SUMMARIES
from tests.import_probe import modules_after

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(main.app, ["--help"])

    assert result.exit_code == 0, result.output
    for name in [*main._GROUPS, *main._COMMANDS, "version"]:
        assert f"  {name} " in result.output, name


@pytest.mark.parametrize("name", [*main._GROUPS, *main._COMMANDS])
def test_each_command_has_its_own_help(name: str) -> None:
    result = runner.invoke(main.app, [name, "--help"])

    assert result.exit_code == 0, result.output
    assert f"Usage: loopml {name}" in result.output
    assert "--install-completion" not in result.output


def test_an_unknown_command_is_refused() -> None:
    result = runner.invoke(main.app, ["nosuch"])

    assert result.exit_code == 2
    assert "No such command 'nosuch'" in result.output


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("deplyments", "'deployments'"), ("ingets", "'ingest'"), ("vresion", "'version'")],
)
def test_a_mistyped_command_names_the_one_meant(typed: str, meant: str) -> None:
    result = runner.invoke(main.app, [typed])

    assert result.exit_code == 2
    assert f"No such command '{typed}'. Did you mean {meant}" in result.output


def test_a_command_imports_only_its_own_module() -> None:
    code = (
        "import sys; from loopml.cli.main import app; "
        "import loopml.cli.main as m; m._lazy_command('tables'); "
        "print(sorted(n for n in sys.modules if n.startswith('loopml.cli.') and n not in "
        "('loopml.cli.main', 'loopml.cli._context', 'loopml.cli._output'))); "
        "print('pandas' in sys.modules, 'loopml.server' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()

    loaded = set(ast.literal_eval(out[0]))
    assert "loopml.cli.tables" in loaded
    assert not loaded & {"loopml.cli.server", "loopml.cli.demo", "loopml.cli.pipelines"}
    assert out[1] == "False False"


@pytest.mark.parametrize("name", [*main._GROUPS, *main._COMMANDS])
def test_the_help_listing_says_what_each_command_says_of_itself(name: str) -> None:
    # `loopml --help` lists the lazy commands from SUMMARIES, not from their modules.
    command = main._lazy_command(name)
    assert command is not None
    own = command.short_help or command.help or ""
    assert SUMMARIES[name] == " ".join(own.split("\n\n")[0].split())


def test_help_imports_no_command_module_and_no_pydantic() -> None:
    # Importing every command's module to list them was 0.40 s of a 0.43 s `loopml --help`
    # (issue 53): pydantic models, Rich and the gate's rules, for one line of text each.
    loaded = modules_after(
        "import contextlib\n"
        "from loopml.cli.main import app\n"
        "with contextlib.suppress(SystemExit): app(['--help'])"
    )
    commands = {f"loopml.cli.{module}" for module in main._GROUPS.values()}
    commands |= {f"loopml.cli.{module}" for module, _ in main._COMMANDS.values()}
    heavy = ("pydantic", "rich", "loopml.core.gate", "loopml.settings", "sqlalchemy")
    assert sorted(loaded & commands) == []
    assert sorted(m for m in heavy if m in loaded) == []


def test_train_help_names_the_text_tasks() -> None:
    result = runner.invoke(main.app, ["train", "--help"])

    assert result.exit_code == 0, result.output
    # The help is wrapped to the terminal: join it again.
    text = " ".join(result.output.split()).replace("- ", "-")
    assert "--task <str> classification, regression, text-classification or text-regression" in (
        text
    ), text


def test_version_names_the_schema_and_the_homes_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml._version import __version__
    from loopml.store import MetadataStore, head_revision

    home = tmp_path / "home"
    monkeypatch.setenv("LOOPML_HOME", str(home))
    monkeypatch.delenv("LOOPML_DATABASE_URL", raising=False)
    head = head_revision()
    for args in (["--version"], ["version"]):
        result = runner.invoke(main.app, args)
        assert result.exit_code == 0, result.output
        # A new home: no database file yet, and none is made by asking.
        assert result.output.splitlines() == [
            f"loopml {__version__}",
            f"schema   {head} (newest migration of this version)",
        ]
    assert not home.exists()
    home.mkdir()
    store = MetadataStore(f"sqlite:///{home / 'loopml.db'}")
    try:
        store.upgrade()
    finally:
        store.dispose()
    result = runner.invoke(main.app, ["--version"])
    assert f"revision {head} (up to date)" in result.output.splitlines()[-1]
