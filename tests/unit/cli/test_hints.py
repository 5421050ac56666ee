"""Every ``loopml ...`` command line the project shows a person parses with the CLI's own parser.

The lines are collected from the portal's templates (``<code>``/``<pre>``), the source's
backtick-quoted hints and messages, ``docs/*.md`` and ``README.md`` (backtick spans and
fenced blocks). Each is resolved through the real Click tree: an unknown command or option
fails the test with the file and line named.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer import _click as click
from typer.core import TyperGroup, TyperOption

from loopml.cli import main

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "src" / "loopml"

_BACKTICK = re.compile(r"(?<!`)`([^`]+)`(?!`)")
_CODE_TAG = re.compile(r"<code[^>]*>(.*?)</code>", re.S)
_BLOCK = re.compile(r"<pre[^>]*>(.*?)</pre>|^```[^\n]*\n(.*?)^```", re.S | re.M)
_PROMPT_LINE = re.compile(r"^[ \t]*(?:\$ )?(loopml[ \t]+[a-z][a-z-]*(?:[ \t][^\n]*)?$)", re.M)
# Placeholders a hint may hold where a word goes: NAME, FILE, <target>, {name}, ...
_PLACEHOLDER = re.compile(r"^(\.\.\.|…|[A-Z][A-Z0-9_.\-]*|<[^>]*>|X|\[.*\])$")


@dataclass(frozen=True)
class Hint:
    where: str  # path:line
    line: str
    prose: bool = False  # unquoted in a sentence: a word that is no command ends it


_ROOT_NAMES = {*main._GROUPS, *main._COMMANDS, "version"}


def _clean(line: str) -> str:
    """The command alone: no shell comment, pipe or chained command after it."""
    line = re.split(r"\s(?:&&|\|\||;|\|(?=\s)|#)(?:\s|$)", " ".join(line.split()))[0]
    return line.strip().rstrip(".,:;)")


def _inline(text: str) -> list[tuple[int, str]]:
    """(offset, command) for each inline code span of ``text`` that is a command line."""
    spans = [*_BACKTICK.finditer(text), *_CODE_TAG.finditer(text)]
    return [
        (m.start(1), _clean(m.group(1)))
        for m in spans
        if re.match(r"\s*loopml\s+[a-z]", m.group(1))
    ]


def _bare(text: str) -> list[tuple[int, str]]:
    """(offset, command) for each unquoted ``loopml COMMAND ...`` in a message, COMMAND one
    of the root's (prose such as "loopml registers ..." is not a command), up to the end of
    its clause."""
    found = []
    for m in re.finditer(
        r"(?<![`\w./-])loopml ([a-z][\w-]*)(?:\s[^`\n;,:)]*)?(?=$|[\s;,:)])", text
    ):
        if m.group(1) in _ROOT_NAMES:
            found.append((m.start(), _clean(m.group(0))))
    return found


def _blocks(text: str) -> list[tuple[int, str]]:
    """(offset, command) for each line of a code block that starts with ``loopml``."""
    found = []
    for block in _BLOCK.finditer(text):
        group = 1 if block.group(1) is not None else 2
        for m in _PROMPT_LINE.finditer(block.group(group)):
            found.append((block.start(group) + m.start(1), _clean(m.group(1))))
    return found


def _python_strings(text: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal, f-string fields as ``{X}``; implicitly joined
    literals are one string, so a hint split over two source lines stays whole."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{X}" for v in node.values]
            found.append((node.lineno, "".join(str(p) for p in parts)))
    return found


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _collect() -> list[Hint]:
    hints = []
    for path in sorted(SRC.rglob("*.py")):
        for lineno, string in _python_strings(path.read_text(encoding="utf-8")):
            for prose, found in ((False, _inline(string)), (True, _bare(string))):
                for offset, line in found:
                    at = lineno + string.count("\n", 0, offset)
                    hints.append(Hint(f"{path.relative_to(ROOT)}:{at}", line, prose))
    pages = [
        *sorted((SRC / "portal" / "templates").glob("*.html")),
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "README.md",
    ]
    for path in pages:
        text = path.read_text(encoding="utf-8")
        blocks = _blocks(text)
        bare = _BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        name = path.relative_to(ROOT)
        hints += [Hint(f"{name}:{_line_of(text, at)}", line) for at, line in blocks]
        hints += [Hint(f"{name}:{_line_of(bare, at)}", line) for at, line in _inline(bare)]
    return hints


def _tokens(line: str) -> list[str]:
    line = re.sub(r"\{\{.*?\}\}", "X", line)  # a Jinja expression is one word
    line = re.sub(r"\{[^{}]*\}", "X", line)  # an f-string field, too
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _problem(line: str, prose: bool = False) -> str | None:
    """None if ``line`` parses with the CLI's own tree, else what is wrong with it."""
    command: click.Command = typer_root()
    ctx = click.Context(command)
    path = ["loopml"]
    words = _tokens(line)[1:]
    while isinstance(command, TyperGroup):
        if not words:
            return None  # a group named alone: `loopml runs`
        word = words.pop(0)
        if word.startswith("-"):
            if word.split("=")[0] in _option_names(command):
                if _takes_value(command, word) and "=" not in word and words:
                    words.pop(0)
                continue
            return f"{' '.join(path)} has no option {word.split('=')[0]}"
        if _PLACEHOLDER.match(word):
            return None  # `loopml deployments ...`: no command to check past it
        names = word.split("|")
        missing = [n for n in names if command.get_command(ctx, n) is None]
        if missing and prose and len(path) > 1:
            return None  # "loopml deployments as a sample": the sentence goes on
        if missing:
            return f"{' '.join(path)} has no command {missing[0]!r}"
        path.append(names[0])
        resolved = command.get_command(ctx, names[0])
        assert resolved is not None
        command = resolved
    known = _option_names(command)
    for word in words:
        if word in ("--", "-"):
            break
        if word.startswith("-") and not re.fullmatch(r"-\d[\d.]*", word):
            for name in word.split("=")[0].split("|"):
                if name not in known:
                    return f"{' '.join(path)} has no option {name}"
    return None


def typer_root() -> TyperGroup:
    group = typer.main.get_command(main.app)
    assert isinstance(group, TyperGroup)
    return group


def _option_names(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if isinstance(param, TyperOption):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def _takes_value(command: click.Command, word: str) -> bool:
    for param in command.params:
        if isinstance(param, TyperOption) and word.split("=")[0] in param.opts:
            return not param.is_flag
    return False


HINTS = _collect()


def test_the_collector_finds_hints_in_every_kind_of_file() -> None:
    kinds = {Path(h.where.split(":")[0]).suffix for h in HINTS}

    assert kinds == {".html", ".py", ".md"}
    assert len(HINTS) > 200


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("loopml data ingest FILE --table NAME", "loopml has no command 'data'"),
        ("loopml tables contract set NAME FILE", None),
        ("loopml sql 'select 1' --csv", "loopml sql has no option --csv"),
        ("loopml sql 'select 1' -f csv", None),
        ("loopml deplyments list", "loopml has no command 'deplyments'"),
        ("loopml models gate|promote|policy", None),
        ("loopml runs list --nosuch 3", "loopml runs list has no option --nosuch"),
        ("loopml --url http://h:1 runs list", None),
    ],
)
def test_the_checker_tells_a_working_line_from_a_broken_one(
    line: str, expected: str | None
) -> None:
    assert _problem(line) == expected


def test_every_hint_names_a_command_and_options_that_exist() -> None:
    broken = [f"{h.where}: `{h.line}`: {p}" for h in HINTS if (p := _problem(h.line, h.prose))]

    assert not broken, "hints the CLI does not take:\n" + "\n".join(broken)
