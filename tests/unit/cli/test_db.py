"""``loopml db``: a downgrade is refused with what to do instead, and the database is left as
it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loopml.store import MetadataStore


def _db(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopml.cli.main", "db", *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_downgrade_is_refused_with_what_to_do_instead(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loopml-home' / 'loopml.db'}"
    assert _db("upgrade").returncode == 0
    for args in (("downgrade",), ("downgrade", "0001_initial")):
        result = _db(*args)
        assert result.returncode == 1, result.stdout + result.stderr
        said = " ".join(result.stderr.split())
        assert "loopml never downgrades a database schema" in said
        assert "restore the backup taken before the upgrade" in said
    store = MetadataStore(url)
    try:
        assert store.current_revision() == store.head_revision()
    finally:
        store.dispose()
