"""The portal's templates and vendored scripts ship in the wheel, and npm's folder does not:
``pip install loopml`` must serve every page with no Node and no CDN.

Read from the build configuration as hatchling reads it (the wheel target's ``packages``,
``include``, ``exclude`` and ``only-include``, then the project root's ``.gitignore``, the
only ignore file it honours: a ``.gitignore`` further down, such as
``src/loopml/portal/assets/.gitignore``, does not keep anything out of a wheel). Building a
wheel here would need hatchling in the test environment and a build's time.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pathspec

import loopml.portal

ROOT = Path(__file__).resolve().parents[3]
PORTAL = Path(loopml.portal.__file__).resolve().parent
SHIPPED = ("templates", "static")


def _hatch() -> tuple[dict[str, Any], dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = config["tool"]["hatch"]["build"]
    return build, build.get("targets", {}).get("wheel", {})


def _patterns(*tables: dict[str, Any], key: str) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(line for t in tables for line in t.get(key, []))


def _gitignored() -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines((ROOT / ".gitignore").read_text().splitlines())


def _in_wheel(relative: str) -> bool:
    """Whether hatchling's wheel target takes the file at ``relative`` (from the root)."""
    build, wheel = _hatch()
    if build.get("ignore-vcs") or wheel.get("ignore-vcs"):
        vcs_ignored = False
    else:
        vcs_ignored = _gitignored().match_file(relative)
    packages = wheel.get("packages", build.get("packages", []))
    only = wheel.get("only-include", build.get("only-include", []))
    selected = [p.strip("/") for p in (*packages, *only)]
    under_selected = any(relative.startswith(f"{p}/") for p in selected)
    includes = _patterns(build, wheel, key="include")
    included = under_selected or (not selected and includes.match_file(relative))
    excluded = _patterns(build, wheel, key="exclude").match_file(relative)
    return included and not excluded and not vcs_ignored


def test_the_package_is_where_the_wheel_target_takes_it_from() -> None:
    assert PORTAL == ROOT / "src" / "loopml" / "portal", "tests must run on the source tree"
    _, wheel = _hatch()
    assert "src/loopml" in wheel["packages"]


def test_every_template_and_static_file_is_declared_in_the_wheel() -> None:
    files = [p for folder in SHIPPED for p in (PORTAL / folder).rglob("*") if p.is_file()]
    names = {p.relative_to(PORTAL).as_posix() for p in files}
    # The files every page loads are among them (the list is not vacuous).
    for needed in ("templates/base.html", "static/loopml.js", "static/vendor/htmx.min.js",
                   "static/vendor/uPlot.iife.min.js", "static/vendor/vendored.json"):  # fmt: skip
        assert needed in names
    left_out = [n for n in sorted(names) if not _in_wheel(f"src/loopml/portal/{n}")]
    assert left_out == []


def test_every_vendored_file_named_in_its_record_ships() -> None:
    record = json.loads((PORTAL / "static" / "vendor" / "vendored.json").read_text())
    for name in record:
        assert (PORTAL / "static" / "vendor" / name).is_file(), name
        assert _in_wheel(f"src/loopml/portal/static/vendor/{name}"), name


def test_npm_packages_and_python_caches_stay_out_of_the_wheel() -> None:
    for relative in (
        "src/loopml/portal/assets/node_modules/htmx.org/dist/htmx.min.js",
        "src/loopml/portal/assets/node_modules/.package-lock.json",
        "src/loopml/portal/pages/__pycache__/runs.cpython-311.pyc",
    ):
        assert not _in_wheel(relative), relative
    assert _in_wheel("src/loopml/portal/assets/package-lock.json")  # the lock is the record
