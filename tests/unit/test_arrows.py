"""docs/architecture.md shows every arrow between packages that exists: for each package of
``loopml`` (a root module counts as one), the packages it imports, anywhere in it (functions
and ``TYPE_CHECKING`` blocks too). The layers say what may be imported; this says what is.
A change that adds or drops an arrow changes the page: the failure prints the block to
paste."""

from __future__ import annotations

import re

from tests.unit.test_architecture import ROOT, SRC, _imports

DOC = ROOT / "docs" / "architecture.md"
_BLOCK = re.compile(r"<!-- arrows: begin[^>]*-->\n(.*?)<!-- arrows: end -->", re.S)
_LOOSE = {"_version", "_settings_doc"}  # the version file and the settings page's generator


def _package(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py")


def arrows() -> dict[str, set[str]]:
    """Each package's imported packages (itself and the loose root files apart)."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        if len(parts) == 1 and parts[0] == "__init__.py":
            continue
        own = _package(parts)
        if own in _LOOSE:
            continue
        targets = found.setdefault(own, set())
        for _, module, name in _imports(path):
            if module[0] != "loopml":
                continue
            target = module[1] if len(module) > 1 else name
            if target and target != own and target not in _LOOSE:
                targets.add(target)
    return found


def expected_block() -> str:
    lines = ["| package | imports (today, from the code) |", "|---|---|"]
    for package, targets in sorted(arrows().items()):
        shown = ", ".join(f"`{t}`" for t in sorted(targets)) or "nothing of loopml"
        lines.append(f"| `{package}` | {shown} |")
    return "\n".join(lines) + "\n"


def test_the_page_shows_every_arrow_that_exists() -> None:
    found = _BLOCK.search(DOC.read_text())
    assert found is not None, "docs/architecture.md lost its <!-- arrows: begin/end --> block"
    assert found.group(1) == expected_block(), (
        "the arrows between packages changed; paste this block into docs/architecture.md "
        "between the arrows markers:\n\n" + expected_block()
    )


def test_late_imports_are_arrows_too() -> None:
    """The API reaches ``scoring`` only inside a route's function (batch scoring is loaded
    on its first call): a reader of module-level imports alone would miss that arrow."""
    assert "scoring" in arrows()["api"]
