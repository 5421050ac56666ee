"""``Client``: the Python SDK's entry point."""

from __future__ import annotations

from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from loopml.client._http import Http
from loopml.client._tls import tls_context
from loopml.core.errors import ServiceUnavailableError, error_from_body

if TYPE_CHECKING:
    from loopml.client.artifacts import Artifacts
    from loopml.client.codesets import Codesets
    from loopml.client.datasets import Datasets
    from loopml.client.deployments import Deployments
    from loopml.client.events import Events
    from loopml.client.experiments import Experiments
    from loopml.client.features import Features
    from loopml.client.models import Models
    from loopml.client.monitor import Monitoring
    from loopml.client.pipelines import Pipelines
    from loopml.client.predictions import Predictions
    from loopml.client.projects import Projects
    from loopml.client.runs import Runs
    from loopml.client.schedules import Schedules
    from loopml.client.sql import Sql
    from loopml.client.streams import Streams
    from loopml.client.tables import Tables
    from loopml.client.tokens import Tokens
    from loopml.client.transforms import Transforms
    from loopml.client.triggers import Triggers
    from loopml.client.users import Users
    from loopml.core.auth import Principal

DEFAULT_URL = "http://127.0.0.1:8765"
KEEPALIVE_EXPIRY_S = 4.0
"""How long an idle pooled connection is kept: under the 5 s after which uvicorn (the
model server, and servers it is often run behind) closes one."""


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
        token: an API token, sent as ``Authorization: Bearer`` on every call (the CLI
            passes ``LOOPML_TOKEN`` or the one ``loopml login`` stored).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        token: str | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if http is None:
            http = httpx.Client(
                base_url=url.rstrip("/"),
                timeout=timeout,
                verify=tls_context(),
                headers=headers,
                # An idle connection is dropped before a server's keep-alive (uvicorn's 5 s
                # by default) can close it under a request sent on it.
                limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
            )
        else:
            http.headers.update(headers)
        self._http = Http(http)

    # Each resource's module is imported on first use: a command that touches one resource
    # (the CLI's `loopml ingest`) does not pay for the other fourteen's models.

    @cached_property
    def projects(self) -> Projects:
        """``client.projects``."""
        from loopml.client.projects import Projects

        return Projects(self._http)

    @cached_property
    def events(self) -> Events:
        """``client.events``."""
        from loopml.client.events import Events

        return Events(self._http)

    @cached_property
    def artifacts(self) -> Artifacts:
        """``client.artifacts``."""
        from loopml.client.artifacts import Artifacts

        return Artifacts(self._http)

    @cached_property
    def experiments(self) -> Experiments:
        """``client.experiments``."""
        from loopml.client.experiments import Experiments

        return Experiments(self._http)

    @cached_property
    def runs(self) -> Runs:
        """``client.runs``."""
        from loopml.client.runs import Runs

        return Runs(self._http)

    @cached_property
    def models(self) -> Models:
        """``client.models``."""
        from loopml.client.models import Models

        return Models(self._http)

    @cached_property
    def tables(self) -> Tables:
        """``client.tables``."""
        from loopml.client.tables import Tables

        return Tables(self._http)

    @cached_property
    def sql(self) -> Sql:
        """``client.sql``."""
        from loopml.client.sql import Sql

        return Sql(self._http)

    @cached_property
    def datasets(self) -> Datasets:
        """``client.datasets``."""
        from loopml.client.datasets import Datasets

        return Datasets(self._http)

    @cached_property
    def transforms(self) -> Transforms:
        """``client.transforms``."""
        from loopml.client.transforms import Transforms

        return Transforms(self._http)

    @cached_property
    def predictions(self) -> Predictions:
        """``client.predictions``."""
        from loopml.client.predictions import Predictions

        return Predictions(self._http)

    @cached_property
    def deployments(self) -> Deployments:
        """``client.deployments``."""
        from loopml.client.deployments import Deployments

        return Deployments(self._http)

    @cached_property
    def pipelines(self) -> Pipelines:
        """``client.pipelines``."""
        from loopml.client.pipelines import Pipelines

        return Pipelines(self._http)

    @cached_property
    def schedules(self) -> Schedules:
        """``client.schedules``."""
        from loopml.client.schedules import Schedules

        return Schedules(self._http)

    @cached_property
    def codesets(self) -> Codesets:
        """``client.codesets``."""
        from loopml.client.codesets import Codesets

        return Codesets(self._http)

    @cached_property
    def features(self) -> Features:
        """``client.features``."""
        from loopml.client.features import Features

        return Features(self._http)

    @cached_property
    def streams(self) -> Streams:
        """``client.streams``."""
        from loopml.client.streams import Streams

        return Streams(self._http)

    @cached_property
    def triggers(self) -> Triggers:
        """``client.triggers``."""
        from loopml.client.triggers import Triggers

        return Triggers(self._http)

    @cached_property
    def monitoring(self) -> Monitoring:
        """``client.monitoring``."""
        from loopml.client.monitor import Monitoring

        return Monitoring(self._http)

    @cached_property
    def tokens(self) -> Tokens:
        """``client.tokens``."""
        from loopml.client.tokens import Tokens

        return Tokens(self._http)

    @cached_property
    def users(self) -> Users:
        """``client.users``."""
        from loopml.client.users import Users

        return Users(self._http)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._http.base_url

    def login(self, user: str, password: str, *, expires_in_days: int = 30) -> dict[str, Any]:
        """Trade a user's password for a new API token; the answer holds ``token`` (shown
        once) and its ``prefix``. ``UnauthenticatedError`` on a wrong password."""
        body = {"user": user, "password": password, "expires_in_days": expires_in_days}
        answer: dict[str, Any] = self._http.json("POST", "/api/v1/auth/login", json=body)
        return answer

    def whoami(self) -> Principal:
        """Who the server takes this client for: user, token, platform admin, role per
        project, and the token's project scope and resource narrowing."""
        from loopml.core.auth import Principal

        return Principal.model_validate(self._http.json("GET", "/api/v1/auth/whoami"))

    def platform_logs(
        self, *, tail: int = 100, grep: str | None = None, level: str | None = None
    ) -> list[str]:
        """The last ``tail`` lines of the server's own log file (platform admins); with
        ``grep`` (a text, any case) or ``level`` (``debug`` ... ``critical``: that level and
        above), the last that match, searched back through its rotated copies."""
        params: dict[str, str | int] = {"tail": tail}
        if grep:
            params["grep"] = grep
        if level:
            params["level"] = level
        lines: list[str] = self._http.json("GET", "/api/v1/logs", params=params)["lines"]
        return lines

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
