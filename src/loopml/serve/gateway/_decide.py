"""The forward decision of every gateway, without I/O: which revision and replica get a
request, whether a failed attempt is tried once more, the headers the replica gets and the
client gets back, and what is counted and logged of the answer.

Both forwarders ask it and only do the I/O around it: the platform's gateway
(``app.Gateway._forward``, over Starlette) and the gateway processes' lean path
(``_proxy.ProxyServer._serve``, over httptools). What each does when no replica can be
picked differs on purpose: the platform wakes the deployment and waits (the activator); a
gateway process hands the request to the platform, which does that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from loopml.core.ids import fast_id
from loopml.serve.gateway._balance import Balancer
from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes
from loopml.serve.oip import safe_id

TO_REPLICA = frozenset({b"content-type", b"accept", b"inference-header-content-length"})
"""What a replica gets of the client's headers (the rest is the gateway's business)."""
_REQUEST_ID = b"x-request-id"


class Attempt(NamedTuple):
    """One try of a request on one replica; ``retry``: it is the second, and the last.
    (Tuples, not frozen dataclasses: one is made per request, and a frozen dataclass's
    ``__init__`` costs several times a tuple's.)"""

    revision: RevisionRoute
    backend: Backend
    retry: bool = False


class Settled(NamedTuple):
    """What a gateway does with a replica's answer besides passing it on.

    Attributes:
        code: the error code its metrics sample carries (``None`` for a success).
        logged: whether it goes to the prediction log (a successful inference answer).
        headers: the headers that say who gave it, added to the client's answer.
    """

    code: str | None
    logged: bool
    headers: dict[str, str]


def replica_headers(
    raw: Iterable[tuple[bytes, bytes]], new_id: Callable[[], str] = fast_id
) -> tuple[dict[str, str], str]:
    """The client's headers a replica gets (``raw``: lower-case names, as both servers read
    them), with the inference id in ``x-request-id``: the client's own if it is safe, else a
    new one; and that id."""
    headers: dict[str, str] = {}
    asked: str | None = None
    for name, value in raw:
        if name in TO_REPLICA:
            headers[name.decode("latin-1")] = value.decode("latin-1")
        elif name == _REQUEST_ID:
            asked = safe_id(value.decode("latin-1"))
    inference_id = asked or new_id()
    headers["x-request-id"] = inference_id
    return headers, inference_id


def first(balancer: Balancer, routes: Routes, pin: int | None) -> Attempt | None:
    """The first try: a revision by weight (``pin``: the one serving that version), a replica
    of it in turn; ``None`` when none is ready."""
    picked = balancer.pick(routes, pin, ())
    return None if picked is None else Attempt(picked[0], picked[1])


def retries(failed: Attempt) -> bool:
    """Whether a try whose replica could not be reached is tried again: once, never twice."""
    return not failed.retry


def again(balancer: Balancer, routes: Routes, pin: int | None, failed: Attempt) -> Attempt | None:
    """The retry after ``failed`` could not reach its replica: another replica (``routes``
    as they are now); ``None`` when no other is ready."""
    picked = balancer.pick(routes, pin, (failed.backend,))
    return None if picked is None else Attempt(picked[0], picked[1], retry=True)


def settle(
    revision: RevisionRoute, status: int, error_code: str | None, inference: bool
) -> Settled:
    """What to count, log and add for an answer of ``revision`` (``error_code``: the one the
    replica named, if any; ``inference``: the request was a prediction)."""
    code = error_code or (f"http_{status}" if status >= 400 else None)
    return Settled(code, inference and status == 200, revision_headers(revision))


_HEADS: dict[tuple[int, str, int], dict[str, str]] = {}


def revision_headers(revision: RevisionRoute) -> dict[str, str]:
    """``X-Loopml-Revision``, ``-Model`` and ``-Model-Version`` of ``revision`` (lower case),
    made once per revision: it is on every answer's path."""
    key = (revision.number, revision.model, revision.version)
    head = _HEADS.get(key)
    if head is None:
        if len(_HEADS) > 4096:
            _HEADS.clear()
        head = _HEADS[key] = {
            "x-loopml-revision": str(revision.number),
            "x-loopml-model": revision.model,
            "x-loopml-model-version": str(revision.version),
        }
    return head
