"""The per-install secret: made on first start, kept in the home with 0600 permissions."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from loopml.core.errors import ConfigurationError

SECRET_FILE = "secrets/install.key"  # noqa: S105 (a file name, not a secret)


def load_or_create_secret(home: Path) -> bytes:
    """The install's 32-byte secret, created (readable by its owner only) if missing.

    Raises:
        ConfigurationError: the file exists but is readable by others (it is never used
            then); the message says how to fix it.
    """
    path = home / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return _read(path)


def _read(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if os.name != "nt" and mode & 0o077:
        raise ConfigurationError(
            f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}` and start again",
            details={"path": str(path), "mode": f"{mode:o}"},
        )
    return bytes.fromhex(path.read_text().strip())
