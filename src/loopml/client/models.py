"""The model registry through the API: models, versions, aliases, tags, lineage, GC."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

from loopml.client._http import Http, segment
from loopml.core.errors import ValidationError
from loopml.core.gate import (
    PROTECTED_ALIAS,
    EvaluationReport,
    GatePolicy,
    GateResult,
    StoredEvaluation,
    parse_policy,
)
from loopml.core.refs import ModelRef
from loopml.core.registry import (
    GcReport,
    InputLineage,
    ModelVersion,
    RegisteredModel,
    VersionLineage,
    VersionStatus,
)
from loopml.core.types import Page

DEFAULT_PROJECT = "default"
SCORING_WAIT_S = 1800.0
"""How long ``evaluate`` and ``gate`` wait for their answer, whatever the client's timeout:
the server scores a model on a whole eval set before it answers."""


class Models:
    """``client.models``: the model registry.

    Example:
        >>> version = client.models.register_version("churn", run_id=run.id)
        >>> client.models.set_alias("churn", "champion", version.version)
        >>> client.models.resolve("churn@champion").version

    Every method takes ``project`` (default ``"default"``).
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def _model(self, project: str, name: str) -> str:
        return f"/api/v1/projects/{segment(project)}/models/{segment(name)}"

    def _version(self, project: str, name: str, version: int) -> str:
        return f"{self._model(project, name)}/versions/{int(version)}"

    def create(
        self,
        name: str,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> RegisteredModel:
        """Create a registered model; ``AlreadyExistsError`` if the name is taken."""
        body = {"name": name, "description": description, "tags": tags or {}}
        path = f"/api/v1/projects/{segment(project)}/models"
        return RegisteredModel.model_validate(self._http.json("POST", path, json=body))

    def get(self, name: str, *, project: str = DEFAULT_PROJECT) -> RegisteredModel:
        """One model; ``NotFoundError`` if absent."""
        return RegisteredModel.model_validate(self._http.json("GET", self._model(project, name)))

    def list(
        self, *, project: str = DEFAULT_PROJECT, limit: int = 100, cursor: str | None = None
    ) -> Page[RegisteredModel]:
        """One page of a project's models, by name."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        data = self._http.json("GET", f"/api/v1/projects/{segment(project)}/models", params=params)
        return Page[RegisteredModel].model_validate(data)

    def iter(
        self, *, project: str = DEFAULT_PROJECT, page_size: int = 100
    ) -> Iterator[RegisteredModel]:
        """Every model of a project, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list(project=project, limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def update(
        self, name: str, *, description: str, project: str = DEFAULT_PROJECT
    ) -> RegisteredModel:
        """Change a model's description."""
        data = self._http.json(
            "PATCH", self._model(project, name), json={"description": description}
        )
        return RegisteredModel.model_validate(data)

    def delete(self, name: str, *, force: bool = False, project: str = DEFAULT_PROJECT) -> None:
        """Delete a model; one with versions only with ``force=True`` (else ``ConflictError``)."""
        params = {"force": "true"} if force else {}
        self._http.request("DELETE", self._model(project, name), params=params)

    def register_version(
        self,
        name: str,
        *,
        run_id: str,
        path: str = "model",
        description: str = "",
        project: str = DEFAULT_PROJECT,
    ) -> ModelVersion:
        """Register the model run ``run_id`` logged at ``path`` as the next version.

        Returns the settled version: check ``status`` (READY, or FAILED with
        ``status_message`` naming the file that did not match its manifest).
        """
        body = {"run_id": run_id, "path": path, "description": description}
        data = self._http.json("POST", f"{self._model(project, name)}/versions", json=body)
        return ModelVersion.model_validate(data)

    def versions(
        self,
        name: str,
        *,
        status: VersionStatus | str | None = None,
        project: str = DEFAULT_PROJECT,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[ModelVersion]:
        """One page of a model's versions, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = str(status)
        if cursor:
            params["cursor"] = cursor
        data = self._http.json("GET", f"{self._model(project, name)}/versions", params=params)
        return Page[ModelVersion].model_validate(data)

    def get_version(
        self, name: str, version: int, *, project: str = DEFAULT_PROJECT
    ) -> ModelVersion:
        """One version; ``NotFoundError`` if absent."""
        return ModelVersion.model_validate(
            self._http.json("GET", self._version(project, name, version))
        )

    def update_version(
        self, name: str, version: int, *, description: str, project: str = DEFAULT_PROJECT
    ) -> ModelVersion:
        """Change a version's description."""
        body = {"description": description}
        data = self._http.json("PATCH", self._version(project, name, version), json=body)
        return ModelVersion.model_validate(data)

    def delete_version(self, name: str, version: int, *, project: str = DEFAULT_PROJECT) -> None:
        """Delete a version; ``ConflictError`` while an alias points at it."""
        self._http.request("DELETE", self._version(project, name, version))

    def resolve(self, ref: str | ModelRef, *, project: str = DEFAULT_PROJECT) -> ModelVersion:
        """The version ``ref`` names: ``churn`` (newest READY), ``churn/3``, ``churn@champion``.

        A reference naming its project (``fraud:churn@champion``) is resolved in that project.
        Invalid references are sent as given, so the server's message explains the grammar.
        """
        text = str(ref)
        try:
            parsed = ModelRef.parse(text)
        except ValidationError:
            parsed = None
        if parsed is not None and parsed.project:
            project = parsed.project
            text = str(ModelRef(name=parsed.name, version=parsed.version, alias=parsed.alias))
        path = f"/api/v1/projects/{segment(project)}/model-refs/{segment(text)}"
        return ModelVersion.model_validate(self._http.json("GET", path))

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        force: bool = False,
        reason: str | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> ModelVersion:
        """Point ``alias`` at a READY ``version`` (creates or moves it).

        ``champion`` moves only to a version the gate passed (``GateRequiredError``
        otherwise) unless ``force`` with a ``reason``, which the server audits.
        """
        path = f"{self._model(project, name)}/aliases/{segment(alias)}"
        body: dict[str, Any] = {"version": version}
        if force:
            if not (reason or "").strip(" \t\r\n"):
                raise ValidationError("a forced promotion needs a reason: it is audited")
            body["force_reason"] = reason
        return ModelVersion.model_validate(self._http.json("PUT", path, json=body))

    def promote(
        self,
        name: str,
        version: int,
        *,
        alias: str = PROTECTED_ALIAS,
        force: bool = False,
        reason: str | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> ModelVersion:
        """Make ``version`` the ``champion`` (or ``alias``); see ``set_alias``."""
        return self.set_alias(name, alias, version, force=force, reason=reason, project=project)

    def set_gate_policy(
        self, name: str, policy: GatePolicy | str, *, project: str = DEFAULT_PROJECT
    ) -> GatePolicy:
        """Set the model's gate policy: a ``GatePolicy`` or YAML/JSON text."""
        parsed = parse_policy(policy) if isinstance(policy, str) else policy
        data = self._http.json(
            "PUT", f"{self._model(project, name)}/gate-policy", json=parsed.model_dump()
        )
        return GatePolicy.model_validate(data)

    def gate_policy(self, name: str, *, project: str = DEFAULT_PROJECT) -> GatePolicy:
        """The model's gate policy (the default one when it has none)."""
        data = self._http.json("GET", f"{self._model(project, name)}/gate-policy")
        return GatePolicy.model_validate(data)

    def delete_gate_policy(self, name: str, *, project: str = DEFAULT_PROJECT) -> None:
        """Drop the model's gate policy: the default applies again."""
        self._http.request("DELETE", f"{self._model(project, name)}/gate-policy")

    def save_evaluation(
        self,
        name: str,
        version: int,
        report: EvaluationReport,
        *,
        project: str = DEFAULT_PROJECT,
    ) -> StoredEvaluation:
        """Store an evaluation report computed by the caller."""
        path = f"{self._version(project, name, version)}/evaluations"
        data = self._http.json("POST", path, json=report.model_dump(mode="json"))
        return StoredEvaluation.model_validate(data)

    def evaluations(
        self, name: str, version: int, *, project: str = DEFAULT_PROJECT
    ) -> builtins.list[StoredEvaluation]:
        """A version's evaluations, newest first."""
        data = self._http.json("GET", f"{self._version(project, name, version)}/evaluations")
        return [StoredEvaluation.model_validate(item) for item in data["items"]]

    def evaluate(
        self,
        name: str,
        version: int,
        *,
        dataset: str | None = None,
        target: str | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> StoredEvaluation:
        """Have the server score a version on a dataset's frozen eval set (by default the
        one it was trained on) and store the report."""
        body: dict[str, Any] = {}
        if dataset is not None:
            body["dataset"] = dataset
        if target is not None:
            body["target"] = target
        path = f"{self._version(project, name, version)}/evaluate"
        # Scoring a text model on its eval set takes a minute or more (52 s seen): past the
        # client's 30 s, the call looked like a dead server though it went on and succeeded.
        answer = self._http.json(
            "POST", path, json=body, extensions=self._http.long_wait(SCORING_WAIT_S)
        )
        return StoredEvaluation.model_validate(answer)

    def gate(
        self,
        name: str,
        version: int,
        *,
        eval_hash: str | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> GateResult:
        """Judge a version by the model's policy; the verdict is stored and returned."""
        path = f"{self._version(project, name, version)}/gate"
        # Judging may score the champion on the challenger's eval set first (as evaluate).
        data = self._http.json(
            "POST",
            path,
            json={"eval_hash": eval_hash},
            extensions=self._http.long_wait(SCORING_WAIT_S),
        )
        return GateResult.model_validate(data)

    def gate_results(
        self, name: str, version: int, *, limit: int = 20, project: str = DEFAULT_PROJECT
    ) -> builtins.list[GateResult]:
        """A version's gate verdicts, newest first."""
        path = f"{self._version(project, name, version)}/gate"
        data = self._http.json("GET", path, params={"limit": limit})
        return [GateResult.model_validate(item) for item in data["items"]]

    def remove_alias(self, name: str, alias: str, *, project: str = DEFAULT_PROJECT) -> None:
        """Remove ``alias``."""
        self._http.request("DELETE", f"{self._model(project, name)}/aliases/{segment(alias)}")

    def set_tag(
        self,
        name: str,
        key: str,
        value: str,
        *,
        version: int | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> RegisteredModel | ModelVersion:
        """Set a tag on the model, or on one of its versions when ``version`` is given."""
        owner = (
            self._model(project, name) if version is None else self._version(project, name, version)
        )
        data = self._http.json("PUT", f"{owner}/tags/{segment(key)}", json={"value": value})
        if version is None:
            return RegisteredModel.model_validate(data)
        return ModelVersion.model_validate(data)

    def delete_tag(
        self, name: str, key: str, *, version: int | None = None, project: str = DEFAULT_PROJECT
    ) -> None:
        """Remove a tag from the model, or from one of its versions."""
        owner = (
            self._model(project, name) if version is None else self._version(project, name, version)
        )
        self._http.request("DELETE", f"{owner}/tags/{segment(key)}")

    def lineage(self, name: str, version: int, *, project: str = DEFAULT_PROJECT) -> VersionLineage:
        """Where a version came from: its run and the run's inputs."""
        data = self._http.json("GET", f"{self._version(project, name, version)}/lineage")
        return VersionLineage.model_validate(data)

    def built_from(self, kind: str, ref: str, *, project: str = DEFAULT_PROJECT) -> InputLineage:
        """What was built from an input (``kind="dataset"``): its runs and their versions."""
        params = {"input_kind": kind, "input_ref": ref}
        data = self._http.json("GET", f"/api/v1/projects/{segment(project)}/lineage", params=params)
        return InputLineage.model_validate(data)

    def gc(self, *, dry_run: bool = False) -> GcReport:
        """Garbage-collect the artifacts of deleted projects and runs (server-wide)."""
        params = {"dry_run": "true" if dry_run else "false"}
        return GcReport.model_validate(self._http.json("POST", "/api/v1/gc", params=params))
