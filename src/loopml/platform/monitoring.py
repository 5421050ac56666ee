"""The monitor of every platform server: its rounds (in a process of its own, or a thread),
its error counts (read from the gateway's request counter), its requests per caller (the
gateway's in-memory counts), its replica samples (``deploy.replicas``) and its gauges on the
gateway's ``/metrics``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import IO

from loopml.deploy import DeploymentControl
from loopml.deploy.replicas import replica_samples
from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor, MonitorThread
from loopml.monitor.metrics import FigureFile, MonitorCollector
from loopml.serve.gateway.metrics import CallerKey, GatewayMetrics
from loopml.settings import Settings, write_settings_file
from loopml.system.processes import terminate

log = logging.getLogger("loopml.monitor")
MODULE = "loopml.platform.monitor_process"

ErrorKey = tuple[str, str, str, str, str]


def gateway_errors(metrics: GatewayMetrics) -> dict[ErrorKey, float]:
    """Failed requests so far by (project, deployment, model, version, status)."""
    counts: dict[ErrorKey, float] = {}
    for family in metrics.requests.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            if not labels.get("status", "0").isdigit() or int(labels["status"]) < 400:
                continue
            key = (
                labels["project"],
                labels["deployment"],
                labels["model"],
                labels["version"],
                labels["status"],
            )
            counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def gateway_callers(metrics: GatewayMetrics) -> dict[CallerKey, float]:
    """Requests so far by (project, deployment, model, version, caller)."""
    return {key: float(count) for key, count in metrics.callers.copy().items()}


def start_monitor(
    ctx: AppContext, metrics: GatewayMetrics, control: DeploymentControl
) -> MonitorThread | MonitorProcess | None:
    """Run the monitor (unless ``monitor.enabled`` is off): its rounds in a process of its
    own (``monitor.process``) or in a background thread, and this server's counts in a
    thread either way; add its gauges to the gateway's registry."""
    if not ctx.settings.monitor.enabled:
        return None
    own_process = ctx.settings.monitor.process
    monitor = Monitor(
        ctx.store,
        ctx.artifacts,
        ctx.settings.monitor,
        errors=lambda: gateway_errors(metrics),
        callers=lambda: gateway_callers(metrics),
        resources=lambda: replica_samples(control),
        takes_lease=not own_process,
    )
    counts = MonitorThread(monitor)
    if not own_process:
        metrics.registry.register(MonitorCollector(monitor))
        return counts.start()
    process = MonitorProcess(ctx.settings, counts)
    metrics.registry.register(MonitorCollector(monitor, process.figures))
    return process.start()


def relay_records(output: IO[bytes]) -> None:
    """Log the records a monitor process writes (one JSON object a line, ``JsonFormatter``'s)
    through this process's logging, as they were logged here; a line that is not one (what
    Python prints when the process fails before its logging is set) at warning, as it came.
    Returns when the process closes its output."""
    for raw in output:
        line = raw.decode("utf-8", "replace").rstrip()
        if not line:
            continue
        try:
            entry = json.loads(line)
            record = logging.makeLogRecord(
                {
                    "name": entry["logger"],
                    "levelno": logging.getLevelName(entry["level"].upper()),
                    "levelname": entry["level"].upper(),
                    "msg": entry["message"],
                    "created": datetime.fromisoformat(entry["ts"]).timestamp(),
                    "exc_text": entry.get("exc_info"),
                    "stack_info": entry.get("stack_info"),
                }
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("monitor process: %s", line)
            continue
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)
    output.close()


class MonitorProcess:
    """``python -m loopml.platform.monitor_process`` (see there), restarted when it exits,
    after a pause that doubles on each quick exit (1 s up to 30 s; back to 1 s once one has
    run a minute); beside it, ``counts``: this server's own monitor, which leaves its
    gateway's and replicas' counts for the process each round. The process's log records
    are the server's own (``relay_records``): in its log file and on its stderr, as a
    monitor in a thread of the server wrote them."""

    FIRST_PAUSE_S = 1.0
    LONGEST_PAUSE_S = 30.0
    STEADY_S = 60.0

    def __init__(self, settings: Settings, counts: MonitorThread, grace_s: float = 30.0) -> None:
        self.settings, self.counts, self.grace_s = settings, counts, grace_s
        self.folder = Path(tempfile.mkdtemp(prefix="loopml-monitor-"))  # mode 0700
        self.settings_file = write_settings_file(settings, self.folder / "settings.json")
        self.figures = FigureFile(self.folder / "figures.json")
        self.process: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._pause_s = self.FIRST_PAUSE_S
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._loop, name="monitor-process", daemon=True)

    def start(self) -> MonitorProcess:
        self.counts.start()
        self._spawn()
        self._watch.start()
        return self

    def _spawn(self) -> None:
        command = [
            sys.executable,
            "-m",
            MODULE,
            str(self.settings_file),
            str(self.figures.path),
            str(os.getpid()),
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._started = time.monotonic()
        output = self.process.stdout
        assert output is not None
        threading.Thread(
            target=relay_records, args=(output,), name="monitor-process-log", daemon=True
        ).start()
        nice = self.settings.monitor.nice
        if nice:  # before it starts a thread: the priority is each thread's own on Linux
            lower = min(os.getpriority(os.PRIO_PROCESS, 0) + nice, 19)
            with contextlib.suppress(ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, self.process.pid, lower)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            process = self.process
            if process is None or process.poll() is None:
                continue
            ran = time.monotonic() - self._started
            steady = ran >= self.STEADY_S
            self._pause_s = (
                self.FIRST_PAUSE_S if steady else min(self._pause_s * 2, self.LONGEST_PAUSE_S)
            )
            log.warning(
                "the monitor process (pid %d) exited with code %s after %.1f s; restarting "
                "in %.1f s",
                process.pid,
                process.returncode,
                ran,
                self._pause_s,
            )
            if not self._stop.wait(self._pause_s):
                self._spawn()

    def stop(self) -> None:
        """Stop the process after its round (killed past ``grace_s``; the lease then
        expires by itself), then this server's counts."""
        self._stop.set()
        self._watch.join()
        terminate(self.process, self.grace_s)
        self.counts.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
