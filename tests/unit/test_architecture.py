"""The house rules of docs/architecture.md, checked on the code as it is: module size,
function complexity, the documented layers and contracts equal to the enforced ones, the
import contracts catching a wrong import, and no package reaching into another's private
parts."""

from __future__ import annotations

import ast
import difflib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from radon.complexity import cc_visit

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "loopml"
MAX_MODULE_LINES = 500
MAX_COMPLEXITY = 15


def _modules() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if "migrations" not in p.parts]


def test_no_module_over_the_size_limit() -> None:
    too_long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}, f"split these by role (over {MAX_MODULE_LINES} lines): {too_long}"


def test_no_function_over_the_complexity_limit() -> None:
    complex_ = {
        f"{p.relative_to(ROOT)}:{block.lineno} {block.name}": block.complexity
        for p in _modules()
        for block in cc_visit(p.read_text())
        if block.complexity > MAX_COMPLEXITY
    }
    assert complex_ == {}, f"split these (cyclomatic complexity over {MAX_COMPLEXITY}): {complex_}"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path) -> list[tuple[int, list[str], str | None]]:
    """Each ``(line, module path, imported name or None)`` of a module, relative imports
    resolved, wherever the import stands (functions and ``TYPE_CHECKING`` blocks too)."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    package = parts[:-1]
    found: list[tuple[int, list[str], str | None]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split("."), None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            found += [(node.lineno, module, alias.name) for alias in node.names]
    return found


def _cross_package_private_imports() -> list[str]:
    # A package is the first component under loopml; the root's own private modules
    # (``loopml._version``, the version file hatch reads) belong to every package.
    offenders: list[tuple[str, int, str]] = []
    for path in SRC.rglob("*.py"):
        own = path.relative_to(SRC).parts[0].removesuffix(".py")
        for line, module, name in _imports(path):
            if module[0] != "loopml" or len(module) < 2 or module[1] in (own, "_version"):
                continue
            if any(_private(part) for part in module[1:]) or (name and _private(name)):
                what = ".".join(module) + (f" import {name}" if name else "")
                offenders.append((str(path.relative_to(ROOT)), line, what))
    return [f"{path}:{line} {what}" for path, line, what in sorted(offenders)]


def test_no_package_imports_another_packages_private_parts() -> None:
    offenders = _cross_package_private_imports()
    assert len(offenders) == 0, (
        f"{len(offenders)} imports of another package's private module or name; export "
        "what others need (a public module, or a name in the package's __init__):\n"
        + "\n".join(offenders)
    )


def test_orm_rows_stay_in_the_store() -> None:
    """Packages above the store get ids and domain values from it, never an ORM row: no
    import of ``loopml.store.orm``, of a ``...Row`` or of ``project_row`` outside it."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).parts[0] == "store":
            continue
        for line, module, name in _imports(path):
            if module[:2] != ["loopml", "store"]:
                continue
            if "orm" in module or (name and (name.endswith("Row") or name == "project_row")):
                what = ".".join(module) + (f" import {name}" if name else "")
                offenders.append(f"{path.relative_to(ROOT)}:{line} {what}")
    assert offenders == [], "ORM rows used outside loopml.store:\n" + "\n".join(offenders)


# The schema is the store's own business, so its hint may name the command that upgrades it.
_STORE_COMMANDS = re.compile(r"`loopml (?!db upgrade`|up --upgrade`)")


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Each ``(line, text)`` of a module's string literals, an f-string's literal parts as
    one text; bare string statements (docstrings, attribute docstrings) left out."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.JoinedStr):
            skip.add(id(node.value))
        elif isinstance(node, ast.JoinedStr):
            parts = [v for v in node.values if isinstance(v, ast.Constant)]
            skip.update(id(v) for v in parts)
            found.append((node.lineno, "".join(str(v.value) for v in parts)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def test_store_messages_name_no_cli_command() -> None:
    """What to do next (the CLI command to run) is the layers above's to say: the store
    raises the errors ``core`` builds and its own strings name no ``loopml`` command but
    the schema's upgrade. Docstrings may."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {text!r}"
        for path in sorted((SRC / "store").rglob("*.py"))
        for line, text in sorted(_string_literals(path))
        if _STORE_COMMANDS.search(text)
    ]
    assert offenders == [], (
        "the store's messages name a CLI command; build the message in core (as "
        "core/promotion.py does) and raise it from the store:\n" + "\n".join(offenders)
    )


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _documented(tag: str) -> list[str]:
    """The lines between ``<!-- {tag}: begin`` and ``<!-- {tag}: end -->`` in the doc."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    begin, end = f"<!-- {tag}: begin", f"<!-- {tag}: end -->"
    assert begin in doc, f"docs/architecture.md lost its {begin} line"
    assert end in doc, f"docs/architecture.md lost its {end} line"
    block = doc.split(begin, 1)[1].split("-->", 1)[1].split(end, 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def _must_match(tag: str, documented: list[str], enforced: list[str]) -> None:
    diff = "\n".join(
        difflib.unified_diff(
            documented, enforced, "docs/architecture.md", "pyproject.toml", lineterm=""
        )
    )
    assert documented == enforced, (
        f"docs/architecture.md's {tag} block differs from pyproject.toml's import contracts "
        f"(the contracts are the source: fix the doc, or the contract on purpose):\n{diff}"
    )


def _code_list(modules: list[str]) -> str:
    return ", ".join(f"`{m}`" for m in modules)


# What each contract type may hold that the doc shows; any other key (an ignore_imports,
# say) would be a rule the doc hides, so the test asks for it to be shown first.
_SHOWN = {
    "layers": {"name", "type", "layers"},
    "forbidden": {"name", "type", "source_modules", "forbidden_modules", "allow_indirect_imports"},
    "acyclic_siblings": {"name", "type", "ancestors"},
}


def _rendered(contract: dict[str, Any]) -> str:
    """One contract other than the layers as its line in the doc's contracts block."""
    kind = contract["type"]
    hidden = set(contract) - _SHOWN.get(kind, set())
    assert kind in _SHOWN, f"docs/architecture.md cannot show a {kind} contract yet"
    assert not hidden, (
        f"contract {contract['name']!r} has {sorted(hidden)}, which docs/architecture.md "
        "does not show: teach _rendered to write it"
    )
    if kind == "forbidden":
        sources = " and ".join(f"`{m}`" for m in contract["source_modules"])
        reach = (
            "directly (indirect imports allowed)"
            if contract.get("allow_indirect_imports")
            else "even indirectly"
        )
        rule = f"{sources} never imports {_code_list(contract['forbidden_modules'])}, {reach}"
    else:
        rule = (
            f"no import cycle between the sibling packages or modules under "
            f"{_code_list(contract['ancestors'])}, at any depth"
        )
    return f"- **{contract['name']}**: {rule}"


def test_documented_layers_are_the_enforced_layers() -> None:
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    hidden = set(layers) - _SHOWN["layers"]
    assert not hidden, f"the layers contract has {sorted(hidden)}, which the doc does not show"
    enforced = [f"{n}. `{layer}`" for n, layer in enumerate(layers["layers"], 1)]
    _must_match("layers", _documented("layers"), enforced)


def test_documented_contracts_are_the_enforced_contracts() -> None:
    enforced = [_rendered(c) for c in _contracts() if c["type"] != "layers"]
    _must_match("contracts", _documented("contracts"), enforced)


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "wrong_import", "broken"),
    [
        ("data/__init__.py", "import loopml.platform.app", "Layers"),
        ("serve/oip.py", "import loopml.train.evaluation", "Serving programs"),
        ("portal/docs.py", "import loopml.api.schemas.common", "The portal calls"),
        ("api/mlflow/filters.py", "import loopml.store.runs", "The faces call"),
        ("packaging/_manifest.py", "import loopml.packaging._signature", "No import cycles"),
    ],
)
def test_import_contracts_catch_a_wrong_import(
    tmp_path: Path, module: str, wrong_import: str, broken: str
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(SRC, tree / "src" / "loopml", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    clean = _lint_imports(tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    target = tree / "src" / "loopml" / module
    target.write_text(target.read_text() + f"\n{wrong_import}  # noqa\n")
    result = _lint_imports(tree)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout
    assert "BROKEN" in result.stdout, result.stdout
