"""Where ``loopml login`` keeps its token, and reading it back (only when no one else can)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path


def token_file() -> Path:
    """Where ``loopml login`` keeps the token: ``$XDG_CONFIG_HOME/loopml/token``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "loopml" / "token"


def stored_token() -> str | None:
    """The token ``loopml login`` stored, if any (and only if no one else can read it)."""
    path = token_file()
    try:
        if os.name != "nt" and path.stat().st_mode & 0o077:
            return None
        return path.read_text().strip() or None
    except OSError:
        return None


def save_token(token: str) -> Path:
    """Write the token readable by its owner only (0600), replacing any earlier one."""
    path = token_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(tmp, path)
    return path


def shell_reference(token: str) -> str:
    """How a line of shell the CLI prints gets ``token`` (the one the CLI sends) when pasted,
    without printing the secret: ``$LOOPML_TOKEN`` when that is where it came from, else
    ``$(cat FILE)`` for the one ``loopml login`` stored, else ``$LOOPML_TOKEN`` to be set."""
    if os.environ.get("LOOPML_TOKEN") == token:
        return "$LOOPML_TOKEN"
    if stored_token() == token:
        return f"$(cat {shlex.quote(str(token_file()))})"
    return "$LOOPML_TOKEN"
