"""Pipelines through the API: apply specs, start, follow and cancel runs, read step logs."""

from __future__ import annotations

import builtins
import time
from pathlib import Path
from typing import Any

from loopml.client._http import Http, segment
from loopml.core.automation import Trigger
from loopml.core.errors import ValidationError
from loopml.core.pipelines import Pipeline, PipelineApplied, PipelineRun, PipelineVersion
from loopml.core.types import Page


def _pipelines(project: str, name: str = "", tail: str = "") -> str:
    base = f"/api/v1/projects/{segment(project)}/pipelines"
    if name:
        base = f"{base}/{segment(name)}"
    return f"{base}/{tail}" if tail else base


def _runs(project: str, run_id: str = "", tail: str = "") -> str:
    base = f"/api/v1/projects/{segment(project)}/pipeline-runs"
    if run_id:
        base = f"{base}/{segment(run_id)}"
    return f"{base}/{tail}" if tail else base


def _codeset_input(pipeline: str, spec_text: str, wanted: str | None) -> str:
    """The input of type ``codeset`` of a spec (``wanted``, or the only one)."""
    import yaml  # type: ignore[import-untyped]

    declared = (yaml.safe_load(spec_text) or {}).get("inputs") or {}
    found = [
        key
        for key, value in declared.items()
        if value == "codeset" or (isinstance(value, dict) and value.get("type") == "codeset")
    ]
    if wanted is not None and wanted in found:
        return wanted
    if wanted is None and len(found) == 1:
        return str(found[0])
    raise ValidationError(
        f"pipeline {pipeline!r} has "
        + (f"codeset inputs {', '.join(found)}: name one" if found else "no input of type codeset")
        + (f" ({wanted!r} is not one)" if wanted else ""),
        details={"field": "input", "codeset_inputs": found},
    )


class Pipelines:
    """``client.pipelines``: workflow specs and their runs.

    Example:
        >>> applied = client.pipelines.apply(Path("retrain.yaml").read_text())
        >>> run = client.pipelines.run("churn-retrain", inputs={"table": "churn"})
        >>> client.pipelines.wait(run.id).status   # RunStatus.SUCCEEDED
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def apply(self, spec: str | Path, *, project: str = "default") -> PipelineApplied:
        """Apply a spec (YAML text, or a path to a file): a new version when it changed.

        Raises:
            SpecError (``invalid_pipeline_spec``): each problem with its line in
                ``details['problems']``.
        """
        text = spec.read_text(encoding="utf-8") if isinstance(spec, Path) else spec
        data = self._http.json("POST", _pipelines(project), json={"spec": text})
        return PipelineApplied.model_validate(data)

    def list(self, project: str = "default") -> builtins.list[Pipeline]:
        """A project's pipelines, by name."""
        data = self._http.json("GET", _pipelines(project))
        return [Pipeline.model_validate(item) for item in data["items"]]

    def get(
        self, name: str, *, version: int | None = None, project: str = "default"
    ) -> tuple[Pipeline, PipelineVersion]:
        """A pipeline and one version's spec (the newest by default)."""
        params = {} if version is None else {"version": version}
        data = self._http.json("GET", _pipelines(project, name), params=params)
        return Pipeline.model_validate(data["pipeline"]), PipelineVersion.model_validate(
            data["version"]
        )

    def run(
        self,
        name: str,
        *,
        inputs: dict[str, Any] | None = None,
        version: int | None = None,
        project: str = "default",
    ) -> PipelineRun:
        """Queue a run; inputs left out take their defaults."""
        body: dict[str, Any] = {"inputs": inputs or {}}
        if version is not None:
            body["version"] = version
        data = self._http.json("POST", _pipelines(project, name, "runs"), json=body)
        return PipelineRun.model_validate(data)

    def assign(
        self,
        name: str,
        codeset: str,
        *,
        input: str | None = None,
        inputs: dict[str, Any] | None = None,
        run_now: bool = True,
        project: str = "default",
    ) -> tuple[Trigger, PipelineRun | None]:
        """Run the pipeline on a codeset's newest version now, and on every new version: a
        ``codeset.versioned`` trigger (concurrency ``queue``) named
        ``<pipeline>-on-<codeset>``. ``input`` is the pipeline's input of type ``codeset``
        (needed only when it has several)."""
        from loopml.client.triggers import Triggers

        _, version = self.get(name, project=project)
        chosen = _codeset_input(name, version.spec, input)
        values = {**(inputs or {}), chosen: codeset}
        trigger = Triggers(self._http).create(
            f"{name}-on-{codeset}"[:63],
            pipeline=name,
            on="codeset.versioned",
            where={"codeset": codeset},
            inputs=values,
            concurrency="queue",
            project=project,
        )
        started = self.run(name, inputs=values, project=project) if run_now else None
        return trigger, started

    def runs(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        project: str = "default",
    ) -> Page[PipelineRun]:
        """Runs, newest first; pass ``next_cursor`` for more."""
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("pipeline", pipeline), ("status", status), ("cursor", cursor)):
            if value is not None:
                params[key] = value
        data = self._http.json("GET", _runs(project), params=params)
        return Page[PipelineRun].model_validate(data)

    def get_run(self, run_id: str, *, project: str = "default") -> PipelineRun:
        """A run with its steps and their attempts."""
        return PipelineRun.model_validate(self._http.json("GET", _runs(project, run_id)))

    def cancel(self, run_id: str, *, project: str = "default") -> PipelineRun:
        """Cancel a run (running steps stop at their next heartbeat)."""
        return PipelineRun.model_validate(self._http.json("POST", _runs(project, run_id, "cancel")))

    def logs(
        self,
        run_id: str,
        step: str,
        *,
        attempt: int | None = None,
        grep: str | None = None,
        level: str | None = None,
        project: str = "default",
    ) -> str:
        """A step attempt's captured log (the newest attempt's by default); with ``grep`` or
        ``level``, only its lines that match (as ``deployments.logs``)."""
        params: dict[str, str | int] = {} if attempt is None else {"attempt": attempt}
        if grep:
            params["grep"] = grep
        if level:
            params["level"] = level
        path = _runs(project, run_id, f"steps/{segment(step)}/log")
        return self._http.request("GET", path, params=params).text

    def wait(
        self,
        run_id: str,
        *,
        timeout_s: float = 3600.0,
        poll_s: float = 1.0,
        project: str = "default",
    ) -> PipelineRun:
        """Poll until the run has finished; return it.

        Raises:
            ValidationError: it had not finished within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.get_run(run_id, project=project)
            if found.status.finished:
                return found
            if time.monotonic() >= deadline:
                raise ValidationError(
                    f"run {run_id} is still {found.status} after {timeout_s:g} s",
                    details={"run": run_id, "status": found.status.value},
                )
            time.sleep(poll_s)
