"""A project's datasets through the API."""

from __future__ import annotations

from loopml.client._http import Http


class Datasets:
    """``client.datasets``."""

    def __init__(self, http: Http) -> None:
        self._http = http
