"""A project's datasets through the API: immutable snapshots, their profiles and splits."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.client._http import Http, segment
from loopml.core.datasets import (
    Dataset,
    DatasetDetail,
    DatasetVersion,
    DatasetVersionInfo,
    DatasetVersionResult,
    Part,
    SplitSpec,
)
from loopml.core.types import Page

if TYPE_CHECKING:
    import pyarrow as pa

CONTENT_HASH_HEADER = "X-Loopml-Content-Hash"
_CHUNK = 1024 * 1024


def _path(project: str, name: str = "", tail: str = "") -> str:
    base = f"/api/v1/projects/{segment(project)}/datasets"
    if name:
        base = f"{base}/{segment(name)}"
    return f"{base}/{tail}" if tail else base


def _version(version: int | str | None) -> str:
    return "latest" if version is None else segment(str(version))


def _spec(
    split: SplitSpec | dict[str, Any] | float | None,
) -> dict[str, Any] | None:
    if split is None:
        return None
    if isinstance(split, SplitSpec):
        return split.model_dump()
    if isinstance(split, dict):
        return dict(split)
    # Sent as given: the server validates, so a bad value is a loopml ValidationError.
    return {"eval_fraction": split}


class Datasets:
    """``client.datasets``: create snapshots, list and show them, split, read, delete."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def create(
        self,
        project: str,
        name: str,
        source: str,
        *,
        description: str = "",
        split: SplitSpec | dict[str, Any] | float | None = None,
        timeout_s: float | None = None,
    ) -> DatasetVersionResult:
        """Snapshot ``source`` as the next version of dataset ``name`` (created if new).

        Args:
            source: a table (``churn``), a table version (``churn@3``) or one SELECT.
            description: the dataset's description (kept when empty).
            split: freeze a train/eval split at once: a ``SplitSpec``, its dict, or just
                the eval fraction (``0.2``).
            timeout_s: the query's time limit (the server's default when ``None``).

        Returns:
            The version; ``created`` is false when the latest version already held the
            same rows (and split), which is then returned instead of a copy.

        Example:
            >>> client.datasets.create("default", "churn_train", "churn@3", split=0.2)
        """
        body: dict[str, Any] = {"name": name, "from": source, "description": description}
        if (spec := _spec(split)) is not None:
            body["split"] = spec
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        data = self._http.json("POST", _path(project), json=body)
        return DatasetVersionResult.model_validate(data)

    def list(
        self, project: str = "default", *, cursor: str | None = None, limit: int = 100
    ) -> Page[Dataset]:
        """One page of a project's datasets, by name."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        data = self._http.json("GET", _path(project), params=params)
        return Page[Dataset].model_validate(data)

    def iter(self, project: str = "default") -> Iterator[Dataset]:
        """Every dataset of a project, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list(project, cursor=cursor, limit=1000)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get(self, project: str, name: str) -> DatasetDetail:
        """A dataset with its newest 100 versions (``versions``) and their summaries."""
        return DatasetDetail.model_validate(self._http.json("GET", _path(project, name)))

    def versions(
        self, project: str, name: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[DatasetVersionInfo]:
        """One page of a dataset's versions, newest first."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        data = self._http.json("GET", _path(project, name, "versions"), params=params)
        return Page[DatasetVersionInfo].model_validate(data)

    def version(self, project: str, name: str, version: int | None = None) -> DatasetVersion:
        """One version (the latest when ``None``) with its profile and split."""
        data = self._http.json("GET", _path(project, name, f"versions/{_version(version)}"))
        return DatasetVersion.model_validate(data)

    def split(
        self,
        project: str,
        name: str,
        version: int | None = None,
        *,
        eval_fraction: float = 0.2,
        seed: int = 0,
        stratify: str | None = None,
    ) -> DatasetVersionResult:
        """Freeze a train/eval split onto a version (the latest when ``None``).

        Raises:
            ConflictError: the version already has a split with another spec.
            ValidationError: the split cannot be made (too few rows, an unknown column, a
                class with one row).
        """
        spec = {"eval_fraction": eval_fraction, "seed": seed, "stratify": stratify}
        path = _path(project, name, f"versions/{_version(version)}/split")
        return DatasetVersionResult.model_validate(self._http.json("POST", path, json=spec))

    def iter_bytes(
        self, project: str, name: str, version: int | None = None, part: Part = "all"
    ) -> Iterator[bytes]:
        """A version's Parquet file (or a split part's) as chunks."""
        path = _path(project, name, f"versions/{_version(version)}/data")
        with self._http.stream("GET", path, params={"part": part}) as response:
            yield from response.iter_bytes(_CHUNK)

    def read(
        self, project: str, name: str, version: int | None = None, part: Part = "all"
    ) -> pa.Table:
        """A version's rows (``all``) or a part of its split (``train``, ``eval``), as a
        pyarrow Table; the server verifies them against their hash before sending."""
        import pyarrow.parquet as pq

        data = b"".join(self.iter_bytes(project, name, version, part))
        return pq.read_table(io.BytesIO(data))

    def download(
        self,
        project: str,
        name: str,
        dest: str | os.PathLike[str],
        *,
        version: int | None = None,
        part: Part = "all",
    ) -> Path:
        """Save a version's Parquet file (or a part's) to ``dest``, which appears only once
        it is complete."""
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_bytes(project, name, version, part):
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def delete(self, project: str, name: str) -> None:
        """Delete a dataset, all its versions and their files."""
        self._http.request("DELETE", _path(project, name))
