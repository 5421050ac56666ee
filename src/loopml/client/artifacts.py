"""A project's artifacts through the API: streamed both ways."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any

from loopml.client._http import Http, segment
from loopml.core.errors import ValidationError
from loopml.core.types import Artifact, Page

CHUNK = 1024 * 1024

Progress = Callable[[int], None]
"""Called with the number of bytes just sent or received."""


def _path(project: str, key: str = "") -> str:
    base = f"/api/v1/projects/{segment(project)}/artifacts"
    return f"{base}/{segment(key)}" if key else base


def _file_chunks(handle: IO[bytes], progress: Progress | None = None) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk
        if progress:
            progress(len(chunk))


class Artifacts:
    """``client.artifacts``: upload, download, stat, list, delete."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def upload(
        self,
        project: str,
        source: str | os.PathLike[str] | bytes | IO[bytes],
        key: str | None = None,
        *,
        progress: Progress | None = None,
    ) -> Artifact:
        """Upload a file path, bytes or an open binary file as ``key``; streamed, not loaded.

        The order is the CLI's (``loopml artifacts upload FILE KEY``): what, then where.

        Args:
            project: the project that owns the artifact.
            source: what to upload.
            key: where to store it, such as ``reports/eval.json``; default the file's name
                (required for bytes and open files).
            progress: called with each chunk's size as it is sent.

        Raises:
            ValidationError: no key for bytes or a file object, or the arguments in the old
                ``(project, key, source)`` order.
        """
        key = _key_for(source, key)
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(source, bytes):
            artifact = self._put(project, key, source, headers)
            if progress:
                progress(len(source))
            return artifact
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as handle:
                # A declared length lets the server refuse an oversize file before it is sent.
                headers["Content-Length"] = str(os.fstat(handle.fileno()).st_size)
                return self._put(project, key, _file_chunks(handle, progress), headers)
        return self._put(project, key, _file_chunks(source, progress), headers)

    def _put(
        self, project: str, key: str, content: bytes | Iterable[bytes], headers: dict[str, str]
    ) -> Artifact:
        data = self._http.json("PUT", _path(project, key), content=content, headers=headers)
        return Artifact.model_validate(data)

    def download(
        self,
        project: str,
        key: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Artifact:
        """Download ``key`` to the file ``dest``, which appears only once it is complete.

        ``progress`` is called with each chunk's size as it arrives.
        """
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_bytes(project, key):
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.stat(project, key)

    def iter_bytes(self, project: str, key: str) -> Iterator[bytes]:
        """The content of ``key`` as chunks."""
        with self._http.stream("GET", _path(project, key)) as response:
            yield from response.iter_bytes(CHUNK)

    def read_bytes(self, project: str, key: str) -> bytes:
        """The whole content of ``key`` (for small artifacts)."""
        return b"".join(self.iter_bytes(project, key))

    def stat(self, project: str, key: str) -> Artifact:
        """Size, time and checksum of ``key``."""
        response = self._http.request("HEAD", _path(project, key))
        return Artifact(
            key=key,
            size=int(response.headers.get("content-length", 0)),
            modified=_last_modified(response.headers),
            sha256=response.headers.get("x-checksum-sha256"),
        )

    def list(
        self, project: str, *, prefix: str = "", cursor: str | None = None, limit: int = 100
    ) -> Page[Artifact]:
        """One page of a project's artifacts under ``prefix``."""
        params: dict[str, Any] = {"prefix": prefix, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        return Page[Artifact].model_validate(self._http.json("GET", _path(project), params=params))

    def iter(self, project: str, *, prefix: str = "", page_size: int = 1000) -> Iterator[Artifact]:
        """Every artifact under ``prefix``, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list(project, prefix=prefix, cursor=cursor, limit=page_size)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def delete(self, project: str, key: str) -> None:
        """Delete ``key``."""
        self._http.request("DELETE", _path(project, key))


def _last_modified(headers: Any) -> datetime:
    return parsedate_to_datetime(headers["last-modified"])


def _key_for(source: object, key: object) -> str:
    if not isinstance(key, str) and key is not None:
        raise ValidationError(
            "artifacts.upload takes (project, source, key), in the CLI's order: got a "
            f"{type(key).__name__} as the key; swap the last two arguments"
        )
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        swapped = isinstance(key, str) and Path(key).is_file()
        hint = ": the arguments are (project, source, key), swap the last two" if swapped else ""
        raise ValidationError(f"cannot upload {str(source)!r}: no such file{hint}")
    if key:
        return key
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    raise ValidationError("artifacts.upload needs a key when the source is bytes or a file")
