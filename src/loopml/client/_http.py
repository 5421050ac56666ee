"""The one place the SDK talks HTTP: errors from the server become loopml errors again."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx

from loopml.core.errors import (
    LoopmlError,
    ReplyTimeoutError,
    ServiceUnavailableError,
    error_from_body,
    error_from_headers,
)


def segment(value: str) -> str:
    """Quote a path parameter so that every character, ``/`` and ``.`` included, reaches the
    server as written (httpx would otherwise resolve ``..`` on the client side)."""
    return quote(value, safe="")


class Http:
    """A thin wrapper over an ``httpx.Client`` that raises loopml errors."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)

    def _unreachable(self, exc: Exception, method: str, path: str) -> ServiceUnavailableError:
        if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
            # The server took the connection: it is running, only this answer is slow.
            limit = _read_timeout(exc)
            waited = f"{limit:g} s" if limit is not None else "the client's timeout"
            return ReplyTimeoutError(
                f"loopml at {self.base_url} did not answer {method} {path} within {waited}: "
                "the server is up, and the call may still finish there (check before "
                "sending it again). Allow more time with LOOPML_CLIENT_TIMEOUT_S, or the SDK's "
                "Client(timeout=...).",
                details={"url": self.base_url, "method": method, "path": path},
            )
        return ServiceUnavailableError(
            f"cannot reach loopml at {self.base_url}: {exc or type(exc).__name__}. "
            "Is the server running? Start it with `loopml up`, or set LOOPML_CLIENT_URL.",
            details={"url": self.base_url},
        )

    def long_wait(self, read_s: float) -> dict[str, Any]:
        """Request extensions that wait up to ``read_s`` for the answer, whatever the client's
        own timeout, for a call whose work the server does before it answers (scoring a
        model, materializing a view); connecting and sending keep the client's timeouts."""
        waited = self.client.timeout
        timeout = httpx.Timeout(waited.connect, read=read_s, write=waited.write)
        # As the request's extension, where httpx reads it (Starlette's test client refuses
        # the `timeout` argument itself).
        return {"timeout": timeout.as_dict()}

    def request(
        self, method: str, path: str, *, raise_errors: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """Send a request; raise the server's error as its loopml class on 4xx/5xx."""
        try:
            response = self.client.request(method, path, **kwargs)
        except (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
            # NetworkError: a refused connection, or one that broke while sending or reading.
            raise self._unreachable(exc, method, path) from exc
        if response.is_error and raise_errors:
            raise _error(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and decode its JSON answer."""
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """Send a request and stream its answer."""
        try:
            with self.client.stream(method, path, **kwargs) as response:
                if response.is_error:
                    response.read()
                    raise _error(response)
                yield response
        except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
            raise self._unreachable(exc, method, path) from exc

    def close(self) -> None:
        self.client.close()


def _read_timeout(exc: httpx.TimeoutException) -> float | None:
    """The read timeout the timed-out request was sent with (a call may set its own)."""
    try:
        timeouts = exc.request.extensions.get("timeout", {})
    except RuntimeError:  # an exception raised without its request
        return None
    limit = timeouts.get("read")
    return float(limit) if isinstance(limit, int | float) else None


def _error(response: httpx.Response) -> LoopmlError:
    if not response.content:
        from_headers = error_from_headers(response.status_code, response.headers)
        if from_headers is not None:
            return from_headers
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_from_body(response.status_code, body)
