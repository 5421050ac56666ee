"""Where the suite's CPU goes: each test's CPU time (its worker's and every child process the
test or its fixtures reaped: servers, CLI calls, converters), summed by module at the end of
the run. ``--durations`` gives wall time, which on a busy machine is mostly other tests' CPU;
this is the figure to cut when CI is CPU-bound (two cores, three workers).

A module fixture's servers are reaped in its last test's teardown, so they count for their
module, not for one test. A process nobody reaps (a daemon re-parented to init) is missed,
and so are the services the tests use (PostgreSQL's backends, the brokers): the summary also
prints the whole machine's busy CPU over the run (``/proc/stat``), to tell how much of it the
tests' own figures show and whether the run was CPU-bound (little idle time).
"""

from __future__ import annotations

import os
import resource
from collections import Counter
from collections.abc import Generator
from typing import Any

import pytest

_PROPERTY = "cpu_s"
_SHOWN = 20


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


_started = pytest.StashKey[float]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    item.stash[_started] = _cpu_s()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, None, None]:
    # Before the teardown's report is made, so the report (sent to xdist's controller)
    # carries it; the teardown itself (module fixtures included) has run by then.
    if call.when == "teardown" and _started in item.stash:
        item.user_properties.append((_PROPERTY, round(_cpu_s() - item.stash[_started], 3)))
    yield


def _machine_cpu_s() -> tuple[float, float] | None:
    """The machine's busy and idle CPU seconds since boot (all cores), or ``None`` without
    ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / ticks, idle / ticks


class _ByModule:
    def __init__(self) -> None:
        self.cpu: Counter[str] = Counter()
        self.machine_at_start = _machine_cpu_s()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown":
            for name, value in report.user_properties:
                if name == _PROPERTY:
                    self.cpu[report.nodeid.partition("::")[0]] += float(value)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.cpu:
            return
        total = sum(self.cpu.values())
        terminalreporter.write_sep("=", f"CPU by module (top {_SHOWN} of {total:,.0f} s)")
        for path, seconds in self.cpu.most_common(_SHOWN):
            terminalreporter.write_line(f"{seconds:8.1f} s {100 * seconds / total:5.1f} %  {path}")
        now = _machine_cpu_s()
        if now is not None and self.machine_at_start is not None:
            busy = now[0] - self.machine_at_start[0]
            idle = now[1] - self.machine_at_start[1]
            terminalreporter.write_line(
                f"the machine over the run: {busy:,.0f} s of CPU busy, "
                f"{100 * idle / max(busy + idle, 1e-9):.0f} % idle; the tests above counted "
                f"{total:,.0f} s ({100 * total / max(busy, 1e-9):.0f} % of the busy time; the "
                "rest: pytest's own collection and imports, services, daemons, other work)"
            )


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.pluginmanager.register(_ByModule(), "loopml-cpu-by-module")
