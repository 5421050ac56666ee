"""Runs through the API: lifecycle, batches, search, files and logged models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, Any

from loopml.client._http import Http, segment
from loopml.client.artifacts import CHUNK, _file_chunks
from loopml.core.run_search import RunSearch
from loopml.core.runs import EndStatus, LogBatch, LoggedModel, MetricPoint, Run
from loopml.core.types import Artifact, Page


def _path(project: str, run_id: str = "", *rest: str) -> str:
    path = f"/api/v1/projects/{segment(project)}/runs"
    if run_id:
        path += f"/{segment(run_id)}"
    return "/".join([path, *rest])


class Runs:
    """``client.runs``: create, get, end, log, heartbeat, search, files, models, delete."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def create(self, experiment: str, *, project: str = "default", **fields: Any) -> Run:
        """Start a RUNNING run (the experiment is created if missing).

        Args:
            experiment: the experiment's name.
            project: the project's name.
            **fields: ``name``, ``heartbeat_timeout_s``, ``code_version``, ``parent_run_id``,
                ``params``, ``tags``, ``inputs`` (see ``POST /runs``).
        """
        body = {"experiment": experiment, **fields}
        return Run.model_validate(self._http.json("POST", _path(project), json=body))

    def get(self, run_id: str, *, project: str = "default") -> Run:
        """One run with its params, latest metrics, tags and inputs."""
        return Run.model_validate(self._http.json("GET", _path(project, run_id)))

    def end(self, run_id: str, status: EndStatus, *, project: str = "default") -> Run:
        """End a run as FINISHED, FAILED or KILLED."""
        data = self._http.json("PATCH", _path(project, run_id), json={"status": status})
        return Run.model_validate(data)

    def log_batch(self, run_id: str, batch: LogBatch, *, project: str = "default") -> None:
        """Log params, metric points, tags and inputs in one transaction."""
        body = batch.model_dump(mode="json", exclude_defaults=True)
        self._http.request("POST", _path(project, run_id, "log-batch"), json=body)

    def heartbeat(self, run_id: str, *, project: str = "default") -> None:
        """Keep a RUNNING run alive; ``ConflictError`` once it ended or was marked LOST."""
        self._http.request("POST", _path(project, run_id, "heartbeat"))

    def delete(self, run_id: str, *, project: str = "default") -> None:
        """Delete a run, its child runs and their files."""
        self._http.request("DELETE", _path(project, run_id))

    def search(self, spec: RunSearch | None = None, *, project: str = "default") -> Page[Run]:
        """One page of runs matching ``spec`` (all runs, newest first, when omitted)."""
        body = (spec or RunSearch()).model_dump(mode="json", exclude_defaults=True)
        data = self._http.json("POST", _path(project, "", "search"), json=body)
        return Page[Run].model_validate(data)

    def iter(self, spec: RunSearch | None = None, *, project: str = "default") -> Iterator[Run]:
        """Every run matching ``spec``, fetching pages as needed."""
        spec = spec or RunSearch()
        while True:
            page = self.search(spec, project=project)
            yield from page.items
            if not page.next_cursor:
                return
            spec = spec.model_copy(update={"cursor": page.next_cursor})

    def metric_history(
        self, run_id: str, key: str, *, project: str = "default"
    ) -> Iterator[MetricPoint]:
        """Every point of a metric, in step order."""
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"key": key, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            path = _path(project, run_id, "metric-history")
            page = Page[MetricPoint].model_validate(self._http.json("GET", path, params=params))
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def upload_artifact(
        self,
        run_id: str,
        path: str,
        source: str | os.PathLike[str] | bytes | IO[bytes],
        *,
        project: str = "default",
    ) -> Artifact:
        """Upload a file path, bytes or an open binary file as the run's file ``path``."""
        headers = {"Content-Type": "application/octet-stream"}
        url = _path(project, run_id, "artifacts", segment(path))
        if isinstance(source, bytes):
            return Artifact.model_validate(
                self._http.json("PUT", url, content=source, headers=headers)
            )
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as handle:
                headers["Content-Length"] = str(os.fstat(handle.fileno()).st_size)
                data = self._http.json("PUT", url, content=_file_chunks(handle), headers=headers)
            return Artifact.model_validate(data)
        data = self._http.json("PUT", url, content=_file_chunks(source), headers=headers)
        return Artifact.model_validate(data)

    def iter_artifact(self, run_id: str, path: str, *, project: str = "default") -> Iterator[bytes]:
        """The content of the run's file ``path`` as chunks."""
        url = _path(project, run_id, "artifacts", segment(path))
        with self._http.stream("GET", url) as response:
            yield from response.iter_bytes(CHUNK)

    def list_artifacts(
        self,
        run_id: str,
        *,
        project: str = "default",
        prefix: str = "",
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Artifact]:
        """One page of the run's files under ``prefix``."""
        params: dict[str, Any] = {"prefix": prefix, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        data = self._http.json("GET", _path(project, run_id, "artifacts"), params=params)
        return Page[Artifact].model_validate(data)

    def record_model(self, run_id: str, *, project: str = "default", **fields: Any) -> LoggedModel:
        """Record a model package already uploaded under the run's artifacts.

        Args:
            run_id: the run.
            project: the project's name.
            **fields: ``path``, ``flavor``, ``format``, ``manifest_sha256``, ``signature``,
                ``summary``.
        """
        data = self._http.json("POST", _path(project, run_id, "models"), json=fields)
        return LoggedModel.model_validate(data)

    def list_models(self, run_id: str, *, project: str = "default") -> list[LoggedModel]:
        """The models a run logged."""
        data = self._http.json("GET", _path(project, run_id, "models"))
        return [LoggedModel.model_validate(item) for item in data]
