"""Shared state of one CLI invocation: settings and the client, built on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.settings import Settings


@dataclass
class CliState:
    """Options given before the command (``loopml --url ... projects list``)."""

    url: str | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from loopml.settings import Settings

            self._settings = Settings()
        return self._settings

    def client(self) -> Client:
        """A client for the configured server."""
        from loopml.client import Client

        settings = self.settings.client
        return Client(self.url or settings.url, timeout=settings.timeout_s)


def state(ctx: typer.Context) -> CliState:
    """The invocation's state, created by the root callback."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj
