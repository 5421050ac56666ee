"""Codesets through the API: pack code here, register it there, read it back."""

from __future__ import annotations

import builtins
import io
from pathlib import Path
from typing import Any

from loopml.client._http import Http, segment
from loopml.core.codesets import (
    Codeset,
    CodesetRegistered,
    CodesetVersion,
    CodesetWebhook,
    split_source,
)
from loopml.core.errors import ValidationError
from loopml.core.names import DEFAULT_PROJECT
from loopml.storage.codetree import (
    PackedTree,
    TreeLimits,
    archive_of,
    export_commit,
    export_remote,
    extract_archive,
    pack_directory,
)

DEFAULT_LIMITS = TreeLimits(max_bytes=100 * 1024 * 1024, max_files=20_000)


def _path(project: str | None, tail: str = "") -> str:
    return f"/api/v1/projects/{segment(project or DEFAULT_PROJECT)}/codesets{tail}"


def _looks_remote(location: str) -> bool:
    return "://" in location or (location.count(":") == 1 and "@" in location.split(":")[0])


def pack_source(source: str, limits: TreeLimits = DEFAULT_LIMITS) -> tuple[PackedTree, str]:
    """The files ``source`` names, and how the version records where they came from.

    ``PATH``: the folder, ``.gitignore`` respected (with the commit when it is a clean git
    work tree); ``PATH@REF``: that commit of the local repository; ``URL[@REF]``: that
    commit (default ``HEAD``) of a cloned repository.

    Raises:
        ValidationError: nothing there, an unknown ref, a link out of the tree.
        PayloadTooLargeError: over ``limits``.
    """
    folder = Path(source).expanduser()
    if folder.is_dir():
        return pack_directory(folder, limits), str(folder.resolve())
    location, ref = split_source(source)
    local = Path(location).expanduser()
    if local.is_dir():
        return export_commit(local, ref, limits), f"{local.resolve()}@{ref or 'HEAD'}"
    if _looks_remote(location):
        return export_remote(location, ref, limits), f"{location}@{ref or 'HEAD'}"
    raise ValidationError(
        f"{source[:200]!r} is no folder, no local repository (PATH@REF) and no git URL",
        details={"source": source[:200]},
    )


class Codesets:
    """``client.codesets``: versioned trees of training code.

    Example:
        >>> client.codesets.register("trainer", "./trainer")          # a folder
        >>> client.codesets.register("trainer", "../repo@v1.2")        # a commit
        >>> client.codesets.download("trainer", "./checkout")
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def register(
        self,
        name: str,
        source: str | Path,
        *,
        project: str | None = None,
        limits: TreeLimits = DEFAULT_LIMITS,
    ) -> CodesetRegistered:
        """Pack ``source`` here (see ``pack_source``) and register it; ``created`` is false
        when the same files were already a version."""
        tree, where = pack_source(str(source), limits)
        if not tree.files:
            raise ValidationError(f"{where}: no file to register (all ignored, or empty)")
        return self.upload(
            name, archive_of(tree), commit=tree.commit, source=where, project=project
        )

    def upload(
        self,
        name: str,
        archive: bytes,
        *,
        commit: str | None = None,
        source: str = "upload",
        project: str | None = None,
    ) -> CodesetRegistered:
        """Register a ready tar / tar.gz archive of regular files."""
        params: dict[str, Any] = {"source": source[:1000]}
        if commit is not None:
            params["commit"] = commit
        data = self._http.json(
            "POST",
            _path(project, f"/{segment(name)}/versions"),
            params=params,
            content=archive,
            headers={"Content-Type": "application/octet-stream"},
        )
        return CodesetRegistered.model_validate(data)

    def list(self, project: str | None = None) -> builtins.list[Codeset]:
        """A project's codesets with their newest versions."""
        data = self._http.json("GET", _path(project))
        return [Codeset.model_validate(item) for item in data["items"]]

    def get(self, name: str, *, project: str | None = None) -> Codeset:
        """A codeset and its newest version."""
        return Codeset.model_validate(self._http.json("GET", _path(project, f"/{segment(name)}")))

    def versions(self, name: str, *, project: str | None = None) -> builtins.list[CodesetVersion]:
        """A codeset's versions, newest first."""
        data = self._http.json("GET", _path(project, f"/{segment(name)}/versions"))
        return [CodesetVersion.model_validate(item) for item in data["items"]]

    def _number(self, name: str, version: int | None, project: str | None) -> int:
        return version if version is not None else self.get(name, project=project).latest_version

    def version(
        self, name: str, version: int | None = None, *, project: str | None = None
    ) -> CodesetVersion:
        """One version with its files (the newest by default)."""
        number = self._number(name, version, project)
        data = self._http.json("GET", _path(project, f"/{segment(name)}/versions/{number}"))
        return CodesetVersion.model_validate(data)

    def archive(
        self, name: str, version: int | None = None, *, project: str | None = None
    ) -> bytes:
        """A version's files as the tar.gz the server keeps."""
        number = self._number(name, version, project)
        tail = f"/{segment(name)}/versions/{number}/archive"
        buffer = io.BytesIO()
        with self._http.stream("GET", _path(project, tail)) as response:
            for chunk in response.iter_bytes():
                buffer.write(chunk)
        return buffer.getvalue()

    def download(
        self,
        name: str,
        destination: str | Path,
        version: int | None = None,
        *,
        project: str | None = None,
        limits: TreeLimits = DEFAULT_LIMITS,
    ) -> builtins.list[str]:
        """Write a version's files under ``destination`` (created; it must hold nothing);
        returns their paths."""
        target = Path(destination)
        if target.exists() and any(target.iterdir()):
            raise ValidationError(f"{target} is not empty: download into a new folder")
        target.mkdir(parents=True, exist_ok=True)
        return extract_archive(self.archive(name, version, project=project), target, limits)

    def set_webhook(
        self,
        name: str,
        repository: str,
        *,
        branch: str | None = None,
        project: str | None = None,
    ) -> CodesetWebhook:
        """Point the codeset's push webhook at a repository on the server; the answer holds
        its secret, shown once."""
        body: dict[str, Any] = {"repository": repository}
        if branch is not None:
            body["branch"] = branch
        data = self._http.json("PUT", _path(project, f"/{segment(name)}/webhook"), json=body)
        return CodesetWebhook.model_validate(data)

    def delete_webhook(self, name: str, *, project: str | None = None) -> None:
        """Remove the codeset's webhook."""
        self._http.request("DELETE", _path(project, f"/{segment(name)}/webhook"))

    def push(self, codeset_id: str, secret: str, event: dict[str, Any]) -> dict[str, Any]:
        """Send a push event to a codeset's webhook, as a git host does."""
        data = self._http.json(
            "POST",
            f"/api/v1/codesets/{segment(codeset_id)}/push",
            json=event,
            headers={"X-Loopml-Secret": secret},
        )
        assert isinstance(data, dict)
        return data
