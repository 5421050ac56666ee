"""Which code a run ran: the git commit and whether the tree was dirty, else a hash of the
entry script."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

_GIT_TIMEOUT_S = 5.0


def _git(*args: str, cwd: Path) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def capture_code_version(cwd: Path | None = None) -> dict[str, str | bool | None]:
    """Where the running code came from.

    Returns:
        ``{"git_commit", "git_dirty"}`` when ``cwd`` (default: the current folder) is inside
        a git work tree with a commit; else ``{"source_sha256", "entry_point"}`` for the
        script being run; else ``{}`` (an interactive session).
    """
    folder = cwd or Path.cwd()
    commit = _git("rev-parse", "HEAD", cwd=folder)
    if commit:
        status = _git("status", "--porcelain", "--untracked-files=no", cwd=folder)
        return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}
    # __main__.__file__ is absolute (Python 3.9+), unlike argv[0] once the cwd has changed.
    entry = getattr(sys.modules.get("__main__"), "__file__", None)
    script = Path(entry) if isinstance(entry, str) else None
    if script is not None and script.is_file():
        digest = hashlib.sha256(script.read_bytes()).hexdigest()
        return {"source_sha256": digest, "entry_point": script.name[:200]}
    return {}
