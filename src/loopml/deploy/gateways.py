"""The gateway processes ``loopml up`` runs when ``gateway.port`` or ``gateway.front`` is set:
``gateway.processes`` of ``python -m loopml.serve.gateway`` sharing the port, each tied to the
platform (it gets SIGTERM when the platform dies, even by SIGKILL) and restarted when it
exits, after a pause that doubles on each quick exit (0.2 s up to 10 s; back to 0.2 s once
one has run a minute). Their output goes to ``logs/gateway.log`` in the home.

In front of the platform they serve the listening socket of ``server.port``, which the
platform binds (so a port already taken fails ``loopml up`` at once) and keeps open: a
connection that comes while every gateway process is restarting waits in its backlog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from loopml.serve.gateway.config import GatewayConfig
from loopml.serve.gateway.process import CONFIG_ENV, bind
from loopml.serve.gateway.wire import SECRET_ENV

if TYPE_CHECKING:
    from loopml.settings import Settings

log = logging.getLogger("loopml.deploy.gateways")

GATEWAY_MODULE = "loopml.serve.gateway"
_FIRST_PAUSE_S = 0.2
_LONGEST_PAUSE_S = 10.0
_STEADY_S = 60.0
_LOG = "gateway.log"


class _Slot:
    def __init__(self, number: int) -> None:
        self.number = number
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.pause_s = _FIRST_PAUSE_S
        self.restart_at: float | None = None


class GatewayProcesses:
    """Starts, watches and stops the gateway processes (see the module docstring).

    Args:
        host: the address to listen on (the platform's).
        port: ``gateway.port``.
        count: ``gateway.processes``.
        platform_url: the platform's own address, where they follow the route table.
        secret: the platform's secret for its gateway (``GatewayLink.secret``).
        config: the ``gateway`` settings.
        log_path: where their output goes (``None``: the platform's own stderr).
        front: the listening socket of ``server.port`` they serve in front of the platform
            (``port`` is then unused).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        count: int,
        platform_url: str,
        secret: str,
        config: GatewayConfig,
        log_path: Path | None,
        front: socket.socket | None = None,
    ) -> None:
        self.front = front
        self.secret = secret
        self.host = host
        self.port = port
        self.platform_url = platform_url
        self._env = {**os.environ, SECRET_ENV: secret, CONFIG_ENV: config.model_dump_json()}
        self._log_path = log_path
        self._slots = [_Slot(n) for n in range(count)]
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, secret: str, platform_url: str, front: FrontDoor | None
    ) -> GatewayProcesses:
        """The gateway processes of ``settings`` (not started), on ``gateway.port`` or in
        front of the platform (``front``), sending the platform (at ``platform_url``) its
        ``secret``."""
        return cls(
            host=settings.server.host.strip("[]"),
            port=settings.gateway.port or settings.server.port,
            count=settings.gateway.processes,
            platform_url=front.platform_url if front is not None else platform_url,
            secret=secret,
            config=settings.gateway,
            # Beside the platform's log file; with none, on the platform's stderr.
            log_path=None if settings.server_log is None else settings.home / "logs" / _LOG,
            front=front.public if front is not None else None,
        )

    def spawn(self) -> None:
        """Start the processes not started yet: ``loopml up`` does it before it imports the
        platform, so that their start overlaps its own (connections wait in the backlog of
        the platform's socket meanwhile)."""
        if self._log_path is not None:
            # 0700 as the platform's own log handler makes it, which may come second now.
            self._log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for slot in self._slots:
            if slot.process is None:
                self._spawn(slot)

    async def start(self) -> None:
        """``spawn``, then watch them: one that exits is started again."""
        self.spawn()
        self._task = asyncio.create_task(self._watch())

    async def close(self, timeout_s: float = 5.0) -> None:
        """SIGTERM each (they post their last report), wait, then SIGKILL what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        running = [s.process for s in self._slots if s.process and s.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()

    def _spawn(self, slot: _Slot) -> None:
        command = [
            sys.executable,
            "-m",
            GATEWAY_MODULE,
            "--parent-pid",
            str(os.getpid()),
            "--platform",
            self.platform_url,
        ]
        passed: tuple[int, ...] = ()
        if self.front is not None:
            passed = (self.front.fileno(),)
            command += ["--front", "--fd", str(passed[0])]
        else:
            command += ["--host", self.host, "--port", str(self.port)]
        with contextlib.ExitStack() as stack:
            out = None if self._log_path is None else stack.enter_context(self._log_path.open("ab"))
            slot.process = subprocess.Popen(
                command,
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=passed,
            )
        slot.started = time.monotonic()
        slot.restart_at = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for slot in self._slots:
                process = slot.process
                if slot.restart_at is not None:
                    if now >= slot.restart_at:
                        self._spawn(slot)
                    continue
                if process is None or process.poll() is None:
                    continue
                ran = now - slot.started
                slot.pause_s = (
                    _FIRST_PAUSE_S if ran >= _STEADY_S else min(slot.pause_s * 2, _LONGEST_PAUSE_S)
                )
                pause = _FIRST_PAUSE_S if ran >= _STEADY_S else slot.pause_s
                log.warning(
                    "gateway process %d (pid %d) exited with code %s after %.1f s; "
                    "restarting in %.1f s (see %s)",
                    slot.number,
                    process.pid,
                    process.returncode,
                    ran,
                    pause,
                    self._log_path or "the platform's log",
                )
                slot.restart_at = now + pause


class FrontDoor:
    """``server.port`` held for gateway processes in front of the platform, and the
    loopback port the platform itself listens on behind them (``gateway.front``).

    Args:
        host: ``server.host``.
        port: ``server.port``.

    Raises:
        OSError: a port could not be bound (taken, or not allowed).
    """

    def __init__(self, host: str, port: int) -> None:
        self.public = bind(host.strip("[]"), port, shared=False)
        try:
            self.internal = bind("127.0.0.1", 0, shared=False)
        except OSError:
            self.public.close()
            raise
        self.platform_url = f"http://127.0.0.1:{self.internal.getsockname()[1]}"

    def close(self) -> None:
        self.public.close()
        self.internal.close()
