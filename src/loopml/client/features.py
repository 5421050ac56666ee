"""The feature store through the API: views, point-in-time training sets, online reads."""

from __future__ import annotations

import builtins
from typing import Any

from loopml.client._http import Http, segment
from loopml.core.datasets import DatasetVersionResult, SplitSpec
from loopml.core.features import (
    FeatureView,
    FeatureViewApplied,
    MaterializeResult,
    OnlineFeatures,
    SkewReport,
)
from loopml.core.names import DEFAULT_PROJECT

MATERIALIZE_WAIT_S = 3600.0
"""How long ``materialize`` and ``training_set`` wait for the server's answer."""


def _path(project: str | None, tail: str) -> str:
    return f"/api/v1/projects/{segment(project or DEFAULT_PROJECT)}/features/{tail}"


class Features:
    """``client.features``: feature views, training sets and online values.

    Example:
        >>> client.features.apply(open("features.yaml").read())
        >>> client.features.training_set("churn_train", entities="labels",
        ...                              views=["user_stats"])
        >>> client.features.materialize("user_stats")
        >>> client.features.get("user_stats", 42).values
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def apply(self, spec: str, *, project: str | None = None) -> FeatureViewApplied:
        """Apply a view's YAML spec (``created`` false when it was unchanged)."""
        data = self._http.json("POST", _path(project, "views"), json={"spec": spec})
        return FeatureViewApplied.model_validate(data)

    def list(self, project: str | None = None) -> builtins.list[FeatureView]:
        """A project's views at their newest versions."""
        data = self._http.json("GET", _path(project, "views"))
        return [FeatureView.model_validate(item) for item in data["items"]]

    def show(
        self, name: str, *, version: int | None = None, project: str | None = None
    ) -> FeatureView:
        """One version of a view (the newest by default)."""
        params = {} if version is None else {"version": version}
        data = self._http.json("GET", _path(project, f"views/{segment(name)}"), params=params)
        return FeatureView.model_validate(data)

    def training_set(
        self,
        dataset: str,
        *,
        entities: str | None = None,
        views: builtins.list[str],
        event_time: str = "event_time",
        description: str = "",
        split: SplitSpec | None = None,
        entities_dataset: str | None = None,
        entities_part: str = "all",
        project: str | None = None,
    ) -> DatasetVersionResult:
        """Join ``views`` onto the entity rows as of each row's time, as a dataset version.
        The entity rows are ``entities`` (a lake table or one SELECT) or
        ``entities_dataset`` (a dataset version, ``labels`` or ``labels@3``; with
        ``entities_part`` ``train`` or ``eval`` of its split).

        A large training set takes minutes (1,000,000 rows x 300 features: about one), so
        this call waits up to an hour for it, as ``materialize`` does."""
        body: dict[str, Any] = {
            "dataset": dataset,
            "entities": entities,
            "entities_dataset": entities_dataset,
            "entities_part": entities_part,
            "views": views,
            "event_time": event_time,
            "description": description,
            "split": None if split is None else split.model_dump(mode="json"),
        }
        data = self._http.json(
            "POST", _path(project, "training-sets"), json=body, extensions=self._long_wait()
        )
        return DatasetVersionResult.model_validate(data)

    def _long_wait(self) -> dict[str, Any]:
        return self._http.long_wait(MATERIALIZE_WAIT_S)

    def materialize(
        self, name: str, *, full: bool = False, project: str | None = None
    ) -> MaterializeResult:
        """Write the view's newest values to the online store (new rows only unless full).

        The answer may take minutes on a large view (10,000,000 entities: about two), so
        this call waits up to an hour for it, whatever the client's timeout.
        """
        path = _path(project, f"views/{segment(name)}/materialize")
        answer = self._http.json("POST", path, json={"full": full}, extensions=self._long_wait())
        return MaterializeResult.model_validate(answer)

    def get(self, name: str, entity: str | int, *, project: str | None = None) -> OnlineFeatures:
        """The online values of one entity of a view keyed by one column."""
        data = self._http.json("GET", _path(project, segment(name)), params={"entity": str(entity)})
        return OnlineFeatures.model_validate(data["items"][0])

    def get_many(
        self,
        name: str,
        entities: builtins.list[dict[str, Any]],
        *,
        project: str | None = None,
    ) -> builtins.list[OnlineFeatures]:
        """The online values of several entities (dicts of the view's keys), in order."""
        data = self._http.json(
            "POST", _path(project, f"{segment(name)}/search"), json={"entities": entities}
        )
        return [OnlineFeatures.model_validate(item) for item in data["items"]]

    def skew(
        self,
        name: str,
        *,
        deployment: str,
        sample: int = 1000,
        tolerance: float = 1e-9,
        project: str | None = None,
    ) -> SkewReport:
        """The share of logged feature values of ``deployment`` that differ, per feature,
        from a point-in-time join from the lake (the newest ``sample`` logged rows)."""
        params = {"deployment": deployment, "sample": sample, "tolerance": tolerance}
        data = self._http.json("GET", _path(project, f"views/{segment(name)}/skew"), params=params)
        return SkewReport.model_validate(data)
