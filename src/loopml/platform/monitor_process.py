"""``python -m loopml.platform.monitor_process SETTINGS_FILE FIGURES_FILE PARENT_PID``: the
monitor's rounds in a process of their own (``monitor.process``), as ``loopml up`` starts it
(``loopml.platform.monitoring.MonitorProcess``).

It runs at ``monitor.nice`` below the server's priority (set by the server as it starts it):
a round reads every deployment's new rows and computes its sketches, seconds of CPU on a
busy log, and in the server's own process it held the server's interpreter while the gateway
waited, and took its share of the core the gateway processes and replicas serve on (issue
53: the slowest requests through the gateway process came in its rounds). Here the server's
interpreter is never held by a round, and the kernel gives the core to the serving processes
first (the figures: docs/serving.md).

The process takes the database's monitor lease like any monitor (``loopml.monitor.lease``);
it has no gateway or replicas of its own, so the server's counts reach it as another
server's do (``loopml.monitor.shares``). After every round it writes its figures for the
server's ``/metrics`` to ``FIGURES_FILE`` (``FigureFile``); its log records go to the server
as JSON lines on stdout. It stops on SIGTERM (sent by
the server, or by the kernel when the server dies: ``die_with_parent``) after its round,
letting the lease go.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

from loopml.monitor.engine import Monitor, MonitorThread
from loopml.monitor.metrics import FigureFile
from loopml.settings import Settings
from loopml.system.lifeline import die_with_parent
from loopml.system.logfiles import JsonFormatter
from loopml.wiring import open_artifact_store, open_metadata_store

log = logging.getLogger("loopml.monitor")
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _logging(settings: Settings) -> None:
    """JSON lines on stdout, which the server logs as its own records (``relay_records``)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("loopml").setLevel(settings.server.log_level.upper())


def run(settings: Settings, figures: Path) -> int:
    """Run rounds until SIGTERM or SIGINT; the exit status."""
    # Blocked before any thread starts, so every thread inherits the mask and the signal
    # waits for ``sigwait`` below (a handler would run amid a round's transaction).
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    store = open_metadata_store(settings)
    try:
        monitor = Monitor(store, open_artifact_store(settings), settings.monitor)
        file = FigureFile(figures)
        thread = MonitorThread(monitor, after_round=lambda: file.write(monitor)).start()
        log.info("monitor process %d started (nice %d)", os.getpid(), os.nice(0))
        signal.sigwait(STOP_SIGNALS)
        thread.stop()
        return 0
    finally:
        store.dispose()


def main(argv: list[str]) -> int:
    settings_file, figures, parent = argv
    if not die_with_parent(int(parent)):
        return 0  # the server is gone already
    settings = Settings.model_validate(json.loads(Path(settings_file).read_text("utf-8")))
    _logging(settings)
    return run(settings, Path(figures))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
