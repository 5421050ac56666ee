"""The figures the architecture issue measures, read from the source tree (no import of it).

    python scripts/architecture_figures.py [--list]

- pass-throughs: functions whose whole body (its docstring apart) opens one store session
  and makes one call in it (``with store.session() as s: return f(s, ...)``);
- ``.session()`` calls outside ``store/``, by package;
- functions taking 10 or more parameters (``self`` and ``cls`` apart), on the CLI's path
  (``cli/``) and off it;
- public class names defined in more than one module;
- modules of ``core/`` that import an I/O module (``os``, ``subprocess``, ``socket``,
  ``ctypes``, ``io``).

``--list`` names each item instead of counting only.
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "loopml"
IO_MODULES = {"os", "subprocess", "socket", "ctypes", "io"}
MANY = 10


def _body(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return body


def _is_session(item: ast.withitem) -> bool:
    call = item.context_expr
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "session"
    )


def is_pass_through(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """One ``with <x>.session() as s:`` holding one statement that is one call (returned,
    assigned or alone)."""
    body = _body(node)
    if len(body) != 1 or not isinstance(body[0], ast.With):
        return False
    block = body[0]
    if len(block.items) != 1 or not _is_session(block.items[0]) or len(block.body) != 1:
        return False
    inner = block.body[0]
    value = getattr(inner, "value", None)
    return isinstance(inner, ast.Return | ast.Expr | ast.Assign) and isinstance(value, ast.Call)


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return len([n for n in names if n not in ("self", "cls")])


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else path.stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="name each item")
    listing = parser.parse_args().list
    passes: list[str] = []
    sessions: Counter[str] = Counter()
    many: dict[str, list[str]] = {"cli": [], "other": []}
    classes: dict[str, set[str]] = defaultdict(set)
    core_io: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        where = str(path.relative_to(ROOT))
        package = _package(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if is_pass_through(node):
                    passes.append(f"{where}:{node.lineno} {node.name}")
                if _parameters(node) >= MANY:
                    side = "cli" if package == "cli" else "other"
                    many[side].append(f"{where}:{node.lineno} {node.name} ({_parameters(node)})")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr == "session" and package != "store":
                    sessions[package] += 1
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                if node in tree.body:
                    classes[node.name].add(where)
            elif isinstance(node, ast.Import | ast.ImportFrom) and package == "core":
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                )
                if any((n or "").split(".")[0] in IO_MODULES for n in names):
                    core_io.append(where)
    twice = {name: sorted(where) for name, where in classes.items() if len(where) > 1}
    figures = [
        ("pass-through functions", len(passes), passes),
        (".session() calls outside store/", sum(sessions.values()), sorted(sessions.items())),
        (f"functions with >= {MANY} parameters, cli/", len(many["cli"]), many["cli"]),
        (f"functions with >= {MANY} parameters, elsewhere", len(many["other"]), many["other"]),
        ("public class names defined twice or more", len(twice), sorted(twice.items())),
        ("core/ modules importing an I/O module", len(set(core_io)), sorted(set(core_io))),
    ]
    for title, count, items in figures:
        print(f"{count:5d}  {title}")
        if listing:
            for item in items:
                print(f"         {item}")


if __name__ == "__main__":
    main()
