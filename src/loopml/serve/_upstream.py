"""The gateway's client for calls to replicas: one ``aiohttp`` session, kept-alive connections.

The upstream call is the gateway's hot path: a py-spy profile under load put about 65 % of
the gateway's CPU in httpx/httpcore's async client (anyio streams, a pool that re-checks each
socket, per-request auth and redirect machinery). aiohttp's connector keeps a plain pool of
keep-alive connections per replica and parses answers with its C parser, so a call costs a
fraction of that. Nothing is allocated per call beyond the headers and the answer.

Failures are sorted into the two cases the gateway treats differently:

- ``Unreachable``: nothing was answered (connect refused or timed out, the replica closed a
  pooled connection, the connection broke mid-answer). Inference has no side effect, so the
  gateway may send the request to another replica.
- ``UpstreamTimeout``: the replica took the request but did not answer in time (504).
"""

from __future__ import annotations

import io

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

# Headers an answer passes on to the client; the rest are the replica's own business.
PASSED_ON = frozenset(
    {
        "content-type",
        "x-inference-id",
        "retry-after",
        "x-loopml-error-code",
        "x-loopml-error-message",
    }
)
# aiohttp adds these unless told not to: a body without a Content-Type would otherwise reach
# the replica as application/octet-stream (and be refused), and the others are noise.
_LARGE_BODY = 512 * 1024
_NO_AUTO_HEADERS = ("Content-Type", "User-Agent", "Accept", "Accept-Encoding")


class Unreachable(Exception):
    """The replica answered nothing: the request may go to another one."""


class UpstreamTimeout(Exception):
    """The replica did not answer within the timeout."""


class UpstreamAnswer:
    """A replica's answer: status, the headers passed on (lower-case names), and the body."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content


class UpstreamClient:
    """Calls replicas over a pool of keep-alive connections (see the module docstring).

    Args:
        connect_timeout_s: connecting to a replica (then ``Unreachable``).
        timeout_s: the longest a call may take, connecting included (then ``UpstreamTimeout``).
        max_connections: the pool's bound, over all replicas.
    """

    def __init__(self, *, connect_timeout_s: float, timeout_s: float, max_connections: int):
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pool (on the running event loop)."""
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            # Under uvicorn's 5 s keep-alive: the pool drops an idle connection before the
            # replica closes it, so a request never races a closing socket (which would
            # mark a healthy replica failed).
            keepalive_timeout=4.0,
            # Replicas are addressed by IP: nothing to resolve, nothing to cache.
            use_dns_cache=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            skip_auto_headers=_NO_AUTO_HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            raise_for_status=False,
            auto_decompress=False,
        )

    async def close(self) -> None:
        """Close the pool; calls in flight fail."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, method: str, url: str, body: bytes, headers: dict[str, str]
    ) -> UpstreamAnswer:
        """One call; ``url`` is already encoded (the client's query string as it came).

        Raises:
            Unreachable: nothing was answered.
            UpstreamTimeout: no complete answer within the timeout.
        """
        session = self._session
        assert session is not None, "the gateway is not started"
        try:
            async with session.request(
                method,
                URL(url, encoded=True),
                data=_payload(body),
                headers=headers,
                allow_redirects=False,
            ) as answer:
                content = await answer.read()
                return UpstreamAnswer(answer.status, _passed_on(answer.headers), content)
        except aiohttp.ConnectionTimeoutError as exc:
            raise Unreachable(f"connecting timed out: {exc}") from exc
        except TimeoutError as exc:  # the total timeout, or reading an answer
            raise UpstreamTimeout(str(exc)) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from exc


def _payload(body: bytes) -> bytes | io.BytesIO | None:
    # aiohttp writes a large ``bytes`` body in one go (and warns that it may hold up the
    # event loop); from a file object it writes in chunks, off the loop.
    if not body:
        return None
    return io.BytesIO(body) if len(body) > _LARGE_BODY else body


def _passed_on(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    passed: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in PASSED_ON:
            passed[lower] = value
    return passed
