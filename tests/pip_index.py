"""A package index of the test's own: wheels made here, served over HTTP on loopback, and
pip pointed at it alone (``PIP_NO_INDEX``, ``PIP_FIND_LINKS``), so no test reaches beyond
this machine."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def wheel(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    """A pure-Python wheel ``<name>-1.0`` holding ``files`` (paths in site-packages)."""
    info = f"{name}-1.0.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    target = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return target


@dataclass
class Index:
    """A folder of wheels served over HTTP on loopback; ``asked`` holds the paths fetched."""

    folder: Path
    url: str
    asked: list[str] = field(default_factory=list)


@contextmanager
def serve_index(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Index]:
    """``folder`` (made) served on a free loopback port, and the only place pip looks."""
    folder.mkdir()
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            asked.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", url)
    try:
        yield Index(folder, url, asked)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
