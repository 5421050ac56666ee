"""``loopml sql``'s output option is spelled as every list command's (``-o csv``), and its
older ``-f/--format`` still works."""

from __future__ import annotations

import pytest

from .conftest import Platform


@pytest.mark.parametrize("option", ["-o", "--output", "-f", "--format"])
def test_csv_output_by_either_name(platform: Platform, option: str) -> None:
    result = platform.cli("sql", "SELECT 1 AS one, 'a' AS two", option, "csv")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['"one","two"', '1,"a"']


def test_an_unknown_output_names_the_choices(platform: Platform) -> None:
    result = platform.cli("sql", "SELECT 1", "-o", "xml")

    assert result.exit_code == 2
    assert "expected table, json or csv, got 'xml'" in result.output
