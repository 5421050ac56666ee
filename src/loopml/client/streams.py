"""Stream sources through the API: NATS JetStream subjects, Redis streams and Kafka topics
into tables."""

from __future__ import annotations

import builtins

from loopml.client._http import Http, segment
from loopml.core.names import DEFAULT_PROJECT
from loopml.core.streams import Stream, StreamCreated, StreamDeleted, StreamsApplied


def _path(project: str | None, name: str = "", tail: str = "") -> str:
    base = f"/api/v1/projects/{segment(project or DEFAULT_PROJECT)}/streams"
    if name:
        base = f"{base}/{segment(name)}"
    return f"{base}/{tail}" if tail else base


class Streams:
    """``client.streams``: consume a broker subject or key into a lake table.

    Example:
        >>> client.streams.create("orders-in", source="nats://127.0.0.1:4222",
        ...                       subject="orders.*", table="orders")
        >>> client.streams.get("orders-in").stats.lag
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def create(
        self,
        name: str,
        *,
        source: str,
        table: str,
        subject: str | None = None,
        dead_letter: str | None = None,
        transform: str | None = None,
        batch_rows: int | None = None,
        batch_ms: int | None = None,
        redeliver_s: int | None = None,
        push: list[str] | None = None,
        create_stream: bool = False,
        project: str | None = None,
    ) -> StreamCreated:
        """Define a stream; the server's supervisor starts its consumer. With
        ``create_stream``, the server makes the JetStream stream over ``subject`` when none
        captures it (``broker_stream`` in the answer names the one read)."""
        body = {
            "name": name,
            "source": source,
            "subject": subject,
            "table": table,
            "dead_letter": dead_letter,
            "transform": transform,
            "batch_rows": batch_rows,
            "batch_ms": batch_ms,
            "redeliver_s": redeliver_s,
            "push": push,
            "create_stream": create_stream,
        }
        return StreamCreated.model_validate(self._http.json("POST", _path(project), json=body))

    def apply(self, spec: str, *, project: str | None = None) -> StreamsApplied:
        """Create or update the streams a YAML text defines (one stream's mapping, or a
        list under ``streams``): each item says ``created``, ``updated`` or ``unchanged``."""
        data = self._http.json("POST", _path(project, tail="apply"), json={"spec": spec})
        return StreamsApplied.model_validate(data)

    def list(self, project: str | None = None) -> builtins.list[Stream]:
        """A project's streams, by name, with their consumers' last reports."""
        data = self._http.json("GET", _path(project))
        return [Stream.model_validate(item) for item in data["items"]]

    def get(self, name: str, *, project: str | None = None) -> Stream:
        """One stream."""
        return Stream.model_validate(self._http.json("GET", _path(project, name)))

    def pause(self, name: str, *, project: str | None = None) -> Stream:
        """Commit what the consumer holds, then stop fetching."""
        return Stream.model_validate(self._http.json("POST", _path(project, name, "pause")))

    def resume(self, name: str, *, project: str | None = None) -> Stream:
        """Fetch again, where the acks left off."""
        return Stream.model_validate(self._http.json("POST", _path(project, name, "resume")))

    def delete(self, name: str, *, project: str | None = None) -> StreamDeleted:
        """Delete the definition and its consumer on the broker (``broker_consumer`` says
        what became of it); its tables and the broker's messages stay."""
        return StreamDeleted.model_validate(self._http.json("DELETE", _path(project, name)))
