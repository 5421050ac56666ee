"""The platform's uvicorn server (imported by ``loopml up`` only, with uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.server import HANDLED_SIGNALS

from loopml.core.timeline import mark
from loopml.faces.context import running_of
from loopml.platform.warm import warm_in_background

log = logging.getLogger("uvicorn.error")

FIRST_ANSWER_WAIT_S = 1.0
"""How long after the port listens the deferred start waits for health's first answer."""


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
        if self.started:
            # Health answers from here: what it does not need (the lifespan's Background,
            # the routes' warm-up) starts once it first answered ready, not before.
            mark("listening")
            self._deferred = asyncio.create_task(self._start_deferred())
        if self.public is not None and sockets and self.started:
            inner = sockets[0].getsockname()
            log.info(
                "Uvicorn running on %s (gateway processes in front; the platform on %s:%d)",
                self.public,
                inner[0],
                inner[1],
            )

    async def _start_deferred(self) -> None:
        """Open what health does not need once health first answered ready, or
        ``FIRST_ANSWER_WAIT_S`` after the port listens (no probe came): the first probe is
        answered without sharing the interpreter with their start (0.3-0.5 s of CPU)."""
        running = running_of(self.app)
        answered = await asyncio.to_thread(running.answered.wait, FIRST_ANSWER_WAIT_S)
        mark("health answered" if answered else "no health probe yet")
        if running.listening is not None:
            running.listening.set()
        warm_in_background(self.app)

    interrupted = False
    """Whether the stop was asked for by SIGINT (Ctrl-C): ``run`` then ends as an interrupt."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, less one thing: once shut down, uvicorn raises the signals it caught
        again, so a SIGTERM (``loopml down``) that got its clean stop still ended the
        process by the signal (``make run``: "Terminated"). Nothing is raised again here: a
        stop asked for by SIGTERM and done exits 0, and one asked for by SIGINT ends as an
        interrupt (130) from ``run``. Not by raising SIGINT again either: that does what the
        handler uvicorn put back does, and a SIGINT inherited ignored (a shell's background
        job, as ``make`` or CI may start us) swallowed it, so a Ctrl-C'd server exited 0."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be listened to from the main thread
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
        self.interrupted = signal.SIGINT in self._captured_signals

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        super().run(sockets)
        if self.interrupted:
            raise KeyboardInterrupt

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        gateways = running_of(self.app).gateways
        if gateways is not None:
            await gateways.close()
        await super().shutdown(sockets)
