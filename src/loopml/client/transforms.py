"""A project's transforms through the API."""

from __future__ import annotations

from loopml.client._http import Http


class Transforms:
    """``client.transforms``."""

    def __init__(self, http: Http) -> None:
        self._http = http
