"""``Client``: the Python SDK's entry point."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from loopml.client._http import Http
from loopml.client.artifacts import Artifacts
from loopml.client.datasets import Datasets
from loopml.client.deployments import Deployments
from loopml.client.events import Events
from loopml.client.experiments import Experiments
from loopml.client.models import Models
from loopml.client.pipelines import Pipelines
from loopml.client.predictions import Predictions
from loopml.client.projects import Projects
from loopml.client.runs import Runs
from loopml.client.schedules import Schedules
from loopml.client.sql import Sql
from loopml.client.tables import Tables
from loopml.client.transforms import Transforms
from loopml.client.triggers import Triggers
from loopml.core.errors import ServiceUnavailableError, error_from_body

DEFAULT_URL = "http://127.0.0.1:8765"


class Client:
    """A connection to a loopml server.

    Example:
        >>> client = Client("http://127.0.0.1:8765")
        >>> client.projects.create("churn")

    Args:
        url: the server's base URL.
        timeout: seconds allowed for each call (connect, read, write).
        http: an ``httpx.Client`` to use instead of a new one (tests pass one bound to an
            in-process app); its base URL wins over ``url``.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._http = Http(http or httpx.Client(base_url=url.rstrip("/"), timeout=timeout))
        self.projects = Projects(self._http)
        self.events = Events(self._http)
        self.artifacts = Artifacts(self._http)
        self.experiments = Experiments(self._http)
        self.runs = Runs(self._http)
        self.models = Models(self._http)
        self.tables = Tables(self._http)
        self.sql = Sql(self._http)
        self.datasets = Datasets(self._http)
        self.transforms = Transforms(self._http)
        self.predictions = Predictions(self._http)
        self.deployments = Deployments(self._http)
        self.pipelines = Pipelines(self._http)
        self.schedules = Schedules(self._http)
        self.triggers = Triggers(self._http)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._http.base_url

    def health(self) -> dict[str, Any]:
        """The server's health report; ``ServiceUnavailableError`` when it is not ready."""
        response = self._http.request("GET", "/api/v1/health", raise_errors=False)
        data: dict[str, Any] = response.json()
        if response.status_code == 503:
            raise ServiceUnavailableError(
                f"loopml at {self.url} is up but not ready: {data.get('checks')}",
                details=data,
            )
        if response.is_error:
            raise error_from_body(response.status_code, data)
        return data

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
