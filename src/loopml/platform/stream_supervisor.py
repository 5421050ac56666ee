"""Runs one consumer process per stream, for ``loopml up`` and ``loopml worker``.

Every few seconds the supervisor reads the streams of every project: a stream without a
live process gets one (``python -m loopml.platform.stream_process``), restarted with backoff
when it dies; a process whose stream was deleted is stopped (it also stops by itself). A
pause is handled by the consumer, which keeps its process. Processes, not threads: a
consumer decodes and commits on its own core, and a crash (or SIGKILL) of one loses
nothing but its unacked messages, which the broker redelivers.

Several supervisors on one database (several ``loopml worker --streams``) each start a
consumer per stream; one holds the stream (``loopml.store.streams.claim``) and the others
wait as standbys, taking over when its heartbeat goes stale.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from loopml.settings import Settings, write_settings_file
from loopml.store import MetadataStore
from loopml.store import streams as stream_rows
from loopml.system.processes import terminate

log = logging.getLogger("loopml.data.streams")
_CHILD = "loopml.platform.stream_process"


@dataclass
class _Child:
    process: subprocess.Popen[bytes] | None = None
    failures: int = 0
    start_after: float = 0.0
    started_at: float = field(default=0.0)


class StreamSupervisor:
    """Keeps a consumer process alive per stream until ``stop``.

    Args:
        store: the metadata database (the streams are read from it).
        settings: handed to every consumer process (secrets included, in a file only
            this user can read).
        interval_s: how often the streams are read again.
        grace_s: how long a stopped consumer gets to commit what it holds.
    """

    def __init__(
        self,
        store: MetadataStore,
        settings: Settings,
        interval_s: float = 2.0,
        grace_s: float = 15.0,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._children: dict[str, _Child] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._settings = settings
        self._folder: Path | None = None
        """Holds the settings file and the consumers' logs; made with the first consumer."""

    def start(self) -> StreamSupervisor:
        """Supervise from a background thread."""
        self._thread = threading.Thread(target=self._loop, name="stream-supervisor", daemon=True)
        self._thread.start()
        return self

    def pids(self) -> dict[str, int]:
        """The live consumer processes, by stream id."""
        return {
            sid: c.process.pid
            for sid, c in self._children.items()
            if c.process is not None and c.process.poll() is None
        }

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("stream supervisor round failed; retrying")
            self._stop.wait(self.interval_s)

    def tick(self) -> None:
        """One round: start what is missing, restart what died, stop what was deleted."""
        with self.store.session() as session:
            wanted = {sid for sid, _ in stream_rows.all_streams(session)}
        now = time.monotonic()
        for sid in list(self._children):
            if sid not in wanted:
                self._terminate(self._children.pop(sid))
        for sid in wanted:
            child = self._children.setdefault(sid, _Child())
            process = child.process
            if process is not None and process.poll() is None:
                if now - child.started_at > 60:
                    child.failures = 0
                continue
            if process is not None:
                child.failures += 1
                child.start_after = now + min(30.0, 0.5 * 2 ** min(child.failures, 6))
                log.warning(
                    "stream consumer %s exited with %s; restarting", sid, process.returncode
                )
                child.process = None
            if now >= child.start_after:
                child.process = self._spawn(sid)
                child.started_at = now

    def _workdir(self) -> Path:
        if self._folder is None:
            folder = Path(tempfile.mkdtemp(prefix="loopml-streams-"))  # mode 0700
            write_settings_file(self._settings, folder / "settings.json")
            self._folder = folder
        return self._folder

    def _spawn(self, stream_id: str) -> subprocess.Popen[bytes]:
        folder = self._workdir()
        command = [sys.executable, "-u", "-m", _CHILD, str(folder / "settings.json"), stream_id]
        with (folder / f"{stream_id}.log").open("ab") as out:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _terminate(self, child: _Child) -> None:
        terminate(child.process, self.grace_s)

    def stop(self) -> None:
        """Stop supervising; every consumer commits what it holds (or is killed after
        ``grace_s``), and its messages not acked are redelivered to the next one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for child in self._children.values():
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        for child in self._children.values():
            self._terminate(child)
        self._children.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
