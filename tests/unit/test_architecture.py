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


# ---------------------------------------------------------------- tests that wait (issue 49)

TESTS = ROOT / "tests"
_CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns"}
_TIME_WORDS = re.compile(r"(?:^|_)(?:elapsed|took|wall|duration|latency|seconds)(?:_|$)")
# Calls whose value is made of their arguments (a time stays a time through them).
_PASS_THROUGH = {"abs", "min", "max", "sum", "float", "round"}
# Loops that really must sleep, as "path:function" ("<module>" for a script's top level).
# A loop that paces a load generator would be one; a loop that polls for a condition in the
# test process never is (it calls eventually).
_MAY_SLEEP_IN_A_LOOP = {
    # A user's plain MLflow script, run in MLflow's own environment (no tests package
    # there): it polls a model version as MLflow's client does.
    "tests/e2e/mlflow_examples/log_and_register.py:<module>",
}


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of ``scope`` outside the functions, lambdas and classes nested in it."""
    found, stack = [], list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        found.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(node))
    return found


def _scopes(tree: ast.Module) -> list[ast.AST]:
    nested = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return [tree, *nested]


def _is_call_of(node: ast.AST, names: set[str], module: str | None = None) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute):
        owner = func.value
        return func.attr in names and (
            module is None or (isinstance(owner, ast.Name) and owner.id == module)
        )
    return module is None and isinstance(func, ast.Name) and func.id in names


def _polls(loop: ast.While | ast.For | ast.AsyncFor, body: list[ast.AST]) -> bool:
    """A ``while`` loop, or a ``for`` over ``range`` that only counts tries and may end early."""
    if isinstance(loop, ast.While):
        return True
    counted = _is_call_of(loop.iter, {"range"})
    target = {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
    used = {n.id for n in body if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    ends = any(isinstance(n, ast.Break | ast.Return) for n in body)
    return counted and not (target & used) and ends


def _sleeping_loops(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line function`` of each ``time.sleep`` in a polling loop of ``path``."""
    found = []
    for scope in _scopes(ast.parse(path.read_text())):
        name = getattr(scope, "name", "<module>")
        for loop in _own_nodes(scope):
            if not isinstance(loop, ast.While | ast.For | ast.AsyncFor):
                continue
            body = _own_nodes(loop)
            sleeps = [n for n in body if _is_call_of(n, {"sleep"}, "time")]
            if sleeps and _polls(loop, body):
                found.append(f"{path.relative_to(root)}:{sleeps[0].lineno} {name}")
    return found


def _clock_names(scope: ast.AST) -> set[str]:
    """Names assigned, in ``scope``, a value computed from a clock reading."""
    names: set[str] = set()
    for node in _own_nodes(scope):
        if not isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign) or not node.value:
            continue
        if any(_is_call_of(n, _CLOCKS) for n in ast.walk(node.value)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _timed(node: ast.AST, clocked: set[str]) -> bool:
    """Whether ``node`` is, or is computed from, a wall-clock time."""
    if isinstance(node, ast.Name):
        return node.id in clocked or bool(_TIME_WORDS.search(node.id))
    if isinstance(node, ast.Attribute):  # the field's own name, not its owner's
        return bool(_TIME_WORDS.search(node.attr))
    if isinstance(node, ast.Call):
        if _is_call_of(node, _CLOCKS):
            return True
        passes = _is_call_of(node, _PASS_THROUGH)
        return passes and any(_timed(a, clocked) for a in node.args)
    if isinstance(node, ast.Subscript):  # a time-named key too: outcome["budget"]["wall"]
        key = node.slice
        named = isinstance(key, ast.Constant) and isinstance(key.value, str)
        return (named and bool(_TIME_WORDS.search(key.value))) or _timed(node.value, clocked)
    if isinstance(node, ast.BinOp):
        return _timed(node.left, clocked) or _timed(node.right, clocked)
    if isinstance(node, ast.UnaryOp):
        return _timed(node.operand, clocked)
    return False


def _upper_bounds_on_time(compare: ast.Compare, clocked: set[str]) -> bool:
    """Whether some ``small < big`` in ``compare`` bounds a time by what is not a time
    (two times compared are measured in the same run: no machine makes that flaky)."""
    sides = [compare.left, *compare.comparators]
    for n, op in enumerate(compare.ops):
        if isinstance(op, ast.Lt | ast.LtE):
            small, big = sides[n], sides[n + 1]
        elif isinstance(op, ast.Gt | ast.GtE):
            small, big = sides[n + 1], sides[n]
        else:
            continue
        if _timed(small, clocked) and not _timed(big, clocked):
            return True
    return False


def _has_margin(lines: list[str], line: int) -> bool:
    """A ``# margin:`` comment on the line, or in the comment block right above it."""
    if "# margin:" in lines[line - 1]:
        return True
    above = line - 2
    while above >= 0 and lines[above].lstrip().startswith("#"):
        if lines[above].lstrip().startswith("# margin:"):
            return True
        above -= 1
    return False


def _unmarked_time_bounds(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line function`` of each assert bounding a wall-clock time from above without
    a margin."""
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for scope in _scopes(ast.parse(text)):
        clocked = _clock_names(scope)
        for node in _own_nodes(scope):
            if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
                continue
            if _upper_bounds_on_time(node.test, clocked) and not _has_margin(lines, node.lineno):
                what = lines[node.lineno - 1].strip()
                name = getattr(scope, "name", "<module>")
                found.append(f"{path.relative_to(root)}:{node.lineno} {name}: {what}")
    return found


def _test_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if p != TESTS / "waiting.py")


def test_no_test_sleeps_in_a_loop_to_wait_for_a_condition() -> None:
    offenders = [
        where
        for path in _test_modules()
        for where in _sleeping_loops(path)
        if _function_of(where) not in _MAY_SLEEP_IN_A_LOOP
    ]
    assert offenders == [], (
        "these loops sleep to wait for something; call tests/waiting.py's eventually() "
        "(it fails saying what it waited for and what it saw):\n" + "\n".join(offenders)
    )


def _function_of(where: str) -> str:
    """``path:function`` of a ``path:line function...`` finding."""
    path, rest = where.split(":", 1)
    return f"{path}:{rest.split(' ', 1)[1].split(':', 1)[0]}"


def test_no_test_bounds_a_wall_clock_time_without_a_margin() -> None:
    offenders = [where for path in _test_modules() for where in _unmarked_time_bounds(path)]
    assert offenders == [], (
        "these asserts bound a wall-clock time from above, which a loaded machine breaks: "
        "assert the thing itself (the engine's records, who released a batch), compare with "
        "a reference measured in the same run, or keep a bound 20x over what a loaded "
        "machine measures with a '# margin:' comment saying so:\n" + "\n".join(offenders)
    )


_HTTP_VERBS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream"}


def _default_http_timeouts(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line`` of each httpx request, and each httpx client not on an in-process
    transport, left on httpx's default timeout of 5 s: a wall-clock bound on the server's
    answer that decides the test's verdict on a loaded machine."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        given = {k.arg for k in node.keywords}
        request = _is_call_of(node, _HTTP_VERBS, "httpx")
        client = _is_call_of(node, {"Client", "AsyncClient"}, "httpx") and "transport" not in given
        if (request or client) and "timeout" not in given and None not in given:
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_test_leaves_an_http_request_on_httpxs_default_timeout() -> None:
    offenders = [where for path in _test_modules() for where in _default_http_timeouts(path)]
    assert offenders == [], (
        "these httpx requests keep httpx's 5 s timeout, which a loaded machine passes: give "
        "them timeout=REQUEST_GUARD_S (tests/waiting.py), a hang guard:\n" + "\n".join(offenders)
    )


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("def f():\n    while not ready():\n        time.sleep(0.1)\n", _sleeping_loops),
        (
            "def f():\n    for _ in range(9):\n        if ready():\n            break\n"
            "        time.sleep(0.1)\n",
            _sleeping_loops,
        ),
        (
            "def f():\n    started = time.monotonic()\n    go()\n"
            "    took_ = time.monotonic() - started\n    assert took_ < 5\n",
            _unmarked_time_bounds,
        ),
        ("def f(r):\n    assert 0 < r.latency_s < 5\n", _unmarked_time_bounds),
        ("def f(t0):\n    assert time.perf_counter() - t0 <= 2.5\n", _unmarked_time_bounds),
        ('def f(out):\n    assert out["budget"]["wall"] <= 22\n', _unmarked_time_bounds),
        ("def f(url):\n    return httpx.get(url).json()\n", _default_http_timeouts),
        ("def f(url):\n    return httpx.Client(base_url=url)\n", _default_http_timeouts),
    ],
)
def test_the_waiting_rules_catch_a_violation(tmp_path: Path, source: str, rule: Any) -> None:
    module = tmp_path / "test_x.py"
    module.write_text(source)
    found = rule(module, tmp_path)
    assert len(found) == 1, f"{rule.__name__} found {found} in:\n{source}"


@pytest.mark.parametrize(
    "source",
    [
        "def f():\n    for kill in range(3):\n        if done(kill):\n            break\n"
        "        time.sleep(0.1)\n",  # the loop's variable is used: a schedule, not a poll
        "def f(t0):\n    took = time.monotonic() - t0\n    assert 0.9 <= took\n",  # lower bound
        "def f(r):\n    assert r.p50_ms <= r.p99_ms\n    assert r.elapsed_s <= r.wall_s\n",
        "def f(t0):\n    took = time.monotonic() - t0\n    # margin: 0.1 s seen, 20x\n"
        "    assert took < 2\n",
        "def f(url):\n    return httpx.get(url, timeout=REQUEST_GUARD_S)\n",
        "def f(app):\n    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app))\n",
    ],
)
def test_the_waiting_rules_let_the_legitimate_pass(tmp_path: Path, source: str) -> None:
    module = tmp_path / "test_x.py"
    module.write_text(source)
    found = (
        _sleeping_loops(module, tmp_path)
        + _unmarked_time_bounds(module, tmp_path)
        + _default_http_timeouts(module, tmp_path)
    )
    assert found == [], f"flagged a legitimate line: {found}"
