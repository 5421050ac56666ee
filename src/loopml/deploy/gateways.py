"""The gateway processes ``loopml up`` runs when ``gateway.port`` is set: ``gateway.processes``
of ``python -m loopml.serve.gateway`` sharing the port, each tied to the platform (it gets
SIGTERM when the platform dies, even by SIGKILL) and restarted when it exits, after a pause
that doubles on each quick exit (0.2 s up to 10 s; back to 0.2 s once one has run a minute).
Their output goes to ``logs/gateway.log`` in the home."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from loopml.serve.gateway.config import GatewayConfig
from loopml.serve.gateway.process import CONFIG_ENV
from loopml.serve.gateway.wire import SECRET_ENV

log = logging.getLogger("loopml.deploy.gateways")

GATEWAY_MODULE = "loopml.serve.gateway"
_FIRST_PAUSE_S = 0.2
_LONGEST_PAUSE_S = 10.0
_STEADY_S = 60.0


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
        log_path: where their output goes.
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
        log_path: Path,
    ) -> None:
        self.host = host
        self.port = port
        self.platform_url = platform_url
        self._env = {**os.environ, SECRET_ENV: secret, CONFIG_ENV: config.model_dump_json()}
        self._log_path = log_path
        self._slots = [_Slot(n) for n in range(count)]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        for slot in self._slots:
            self._spawn(slot)
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
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--platform",
            self.platform_url,
        ]
        with self._log_path.open("ab") as out:
            slot.process = subprocess.Popen(
                command,
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
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
                    self._log_path,
                )
                slot.restart_at = now + pause
