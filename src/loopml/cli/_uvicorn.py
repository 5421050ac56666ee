"""The platform's uvicorn server (imported by ``loopml up`` only, with uvicorn)."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("uvicorn.error")


class PlatformServer(uvicorn.Server):
    """uvicorn's server, which stops the gateway processes first on the way out: they post
    their last answers for the prediction log while the platform still listens (uvicorn stops
    listening before the app's lifespan ends, where everything else stops).

    Args:
        public: the URL of ``server.port`` when gateway processes serve it in front of
            this server (uvicorn says where it runs only for the ports it binds itself).
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, public: str | None = None) -> None:
        super().__init__(config)
        self.app = app
        self.public = public

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.public is not None and sockets and self.started:
            inner = sockets[0].getsockname()
            log.info(
                "Uvicorn running on %s (gateway processes in front; the platform on %s:%d)",
                self.public,
                inner[0],
                inner[1],
            )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, less one thing: once shut down, uvicorn raises the signals it caught
        again, so a SIGTERM (``loopml down``) that got its clean stop still ended the
        process by the signal (``make run``: "Terminated"). A stop asked for by SIGTERM and
        done exits 0; a Ctrl-C still ends as an interrupt (130)."""
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        gateways = getattr(self.app.state, "gateways", None)
        if gateways is not None:
            await gateways.close()
        await super().shutdown(sockets)
