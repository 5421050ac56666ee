"""AutoML's trials on a Ray cluster (``--on ray``): the same defaults-first trials and FLAML
search, run as Ray tasks of 1 CPU each, as many at a time as the cluster has CPUs.

Each default is one task, as many at a time as there are CPUs, under the local rule
(``_engine._search``: a later one only when the clock leaves room for it). The
search is split into one task per CPU (a *part*): each runs FLAML's own sequential search
(``_flaml.search``, one thread) over every learner, from a seed of its own and with another
learner tried first (``split_search``).
The parts send each finished trial to a small actor (``_Mailbox``); the driver (this
process) takes them from it, records them (``TrialLog``: child runs, the ensemble's turn)
and posts the search's deadline back, which the parts read after every trial, as the local
search reads its own clock; a part left less time than its last trial took waits for the
driver's last word (the driver may be deciding the ensemble, which can give time back).

Not FLAML's Ray integration (``n_concurrent_trials`` with ``use_ray``, through Ray Tune):
measured on 6,000 rows x 20 columns, 20 s, it finished 6 trials on 1 CPU and 7 on 2
against 83 for the local search (a Tune actor and result files per trial), and it reports
trials only once the search is over, so neither child runs nor the budget rule could
follow it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from loopml.cluster.ray import import_ray, init_ray
from loopml.core.errors import ServiceUnavailableError
from loopml.train.automl import _flaml
from loopml.train.automl._defaults import score_default, starting_points
from loopml.train.automl._metrics import TaskKind
from loopml.train.automl._split import Validation

_PURPOSE = "AutoML on Ray (--on ray)"
CONNECT_TIMEOUT_S = 5.0
"""How long the head's port may take to answer: ``ray.init`` itself retries for minutes."""
_LEARNER_MODULES = (
    "lightgbm",
    "xgboost",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "flaml.automl.model",
    "flaml.automl.ml",
    "loopml.train.automl._defaults",
)
POLL_S = 0.1
STOP_GRACE_S = 0.5
"""How long parts may take to end their trial in flight once the deadline passed, before
their tasks are cancelled."""


@dataclass(frozen=True)
class RayTrials:
    """A cluster joined for AutoML: ``slots`` trials at a time, one CPU each."""

    ray: Any
    address: str | None
    slots: int


def connect(address: str | None) -> RayTrials:
    """Join the Ray cluster at ``address`` (``None``: what ``ray.init()`` finds, else a Ray
    instance of this process's own); an existing connection is reused.

    Raises:
        ConfigurationError: Ray is not installed.
        ServiceUnavailableError: the cluster cannot be reached, or has no CPU.
    """
    ray = import_ray(_PURPOSE)
    where = address or "(a Ray instance of this process's own)"
    try:
        _answers(address)
        if not ray.is_initialized():
            init_ray(ray, address)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ServiceUnavailableError(
            f"cannot reach the Ray cluster at {where}: {exc}", details={"address": address}
        ) from exc
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < 1:
        raise ServiceUnavailableError(
            f"the Ray cluster at {where} has no CPU to run AutoML's trials on",
            details={"address": address},
        )
    slots = trial_slots(cpus, int(ray.available_resources().get("CPU", 0)))
    _warm(ray, slots)
    return RayTrials(ray=ray, address=address, slots=slots)


def trial_slots(cpus: int, free: int) -> int:
    """How many search tasks to run at a time on a cluster of ``cpus`` CPUs, ``free`` of them
    free now: one a free CPU, at least one (which waits for a CPU). A task for a CPU another
    job holds would start when that job ends, its share of the budget gone by then."""
    return max(1, min(cpus, free))


def _import_learners() -> None:
    for name in _LEARNER_MODULES:
        with contextlib.suppress(ImportError):  # xgboost is optional; a trial reports others
            importlib.import_module(name)


def _warm(ray: Any, slots: int) -> None:
    """Import the learners, while the data is read and prepared, in this process (for the
    final fit) and in a worker process per CPU (for the trials): seconds each on a busy
    machine (5.5 s before the first trial measured on the shared 2-core one), which would
    otherwise be spent out of the search's budget."""
    threading.Thread(target=_import_learners, name="loopml-warm-learners", daemon=True).start()
    task = ray.remote(num_cpus=1, max_retries=0)(_import_learners)
    for _ in range(slots):
        task.remote()


def _answers(address: str | None) -> None:
    """Raise ``OSError`` when the head's port does not take a connection in time."""
    if address in (None, "", "auto", "local"):
        return
    parts = urlsplit(f"//{address}")
    if parts.hostname is None or parts.port is None:
        return
    socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_TIMEOUT_S).close()


@dataclass(frozen=True)
class SearchShare:
    """One search task's share: its learners (in FLAML's order of first tries), seed, trial
    cap, and whether it starts from the defaults (``starting_points``)."""

    estimators: list[str]
    seed: int
    max_iter: int | None
    from_defaults: bool = False


def split_search(
    names: list[str], slots: int, seed: int, max_iter: int | None
) -> list[SearchShare]:
    """One part per slot, each searching every learner, the first one the next in turn and
    from a seed of its own; only the first part starts from the defaults (the others from
    FLAML's cheapest configurations); ``max_iter`` shared out.

    Every learner in every part, rather than the learners dealt out: FLAML then spends each
    CPU on the learners whose trials pay off there, where a part dealt random forest and
    the linear learner spent its CPU on them. Measured at 30 s on 2 nodes of 1 CPU (20,000
    rows x 30 columns, two runs each): 74 and 71 trials against 48 and 62."""
    parts = []
    for i in range(slots):
        cap = None if max_iter is None else max_iter // slots + (i < max_iter % slots)
        turn = i % len(names)
        if cap != 0:
            learners = names[turn:] + names[:turn]
            parts.append(SearchShare(learners, seed=seed + i, max_iter=cap, from_defaults=i == 0))
    return parts


class _Mailbox:
    """The actor between the parts and the driver: trials up, the deadline down, and
    whether it is final (the driver's last word: the search ends)."""

    def __init__(self, deadline: float) -> None:
        self._trials: list[_flaml.RawTrial] = []
        self._deadline = (deadline, False)

    def add(self, trial: _flaml.RawTrial) -> None:
        self._trials.append(trial)

    def take(self) -> list[_flaml.RawTrial]:
        taken, self._trials = self._trials, []
        return taken

    def deadline(self) -> tuple[float, bool]:
        return self._deadline

    def set_deadline(self, deadline: float, final: bool) -> None:
        self._deadline = (deadline, final)


def _node() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def _default(name: str, validation: Validation, kind: TaskKind, metric: str) -> _flaml.RawTrial:
    raw = score_default(name, validation, kind=kind, metric=metric, n_jobs=1)
    return dataclasses.replace(raw, node=_node())


def _part(
    validation: Validation,
    part: SearchShare,
    mailbox: Any,
    *,
    kind: TaskKind,
    metric: str,
    budget_s: float,
    start: bool,
) -> None:
    import ray

    node = _node()
    last_s = [0.0]

    def left() -> float:
        # Less time than the last trial took, but not the driver's last word: the driver is
        # still to hear of the last trials, or is deciding the ensemble (which may give
        # time back). The part waits for it, as the local search waits for the ensemble
        # decided between two of its trials: FLAML told of a moment's time ends its search.
        while True:
            deadline, final = ray.get(mailbox.deadline.remote())
            seconds = float(deadline) - time.time()
            if final or seconds > last_s[0]:
                return seconds
            time.sleep(POLL_S / 2)

    def send(raw: _flaml.RawTrial) -> None:
        last_s[0] = raw.train_time_s
        mailbox.add.remote(dataclasses.replace(raw, node=node, ended=time.time()))

    _flaml.search(
        validation,
        kind=kind,
        metric=metric,
        time_budget_s=budget_s,
        estimators=part.estimators,
        seed=part.seed,
        max_iter=part.max_iter,
        n_jobs=1,
        time_left=left,
        on_trial=send,
        starting_points=starting_points(part.estimators) if start and part.from_defaults else None,
    )


def _no_deadline() -> float:
    return math.inf


class RaySearch:
    """The defaults and the search of one ``run_automl`` call, on a joined cluster."""

    def __init__(self, trials: RayTrials, validation: Validation, kind: TaskKind, metric: str):
        self._ray = trials.ray
        self._where = trials.address or "(a Ray instance of this process's own)"
        self.slots = trials.slots
        self._kind = kind
        self._metric = metric
        self._data = self._ray.put(validation)
        self._default = self._ray.remote(num_cpus=1, max_retries=0)(_default)
        self._part = self._ray.remote(num_cpus=1, max_retries=0)(_part)

    def score_defaults(self, names: list[str], timeout_s: float) -> list[_flaml.RawTrial]:
        """The defaults of ``names``, scored at once, in their order.

        Raises:
            ServiceUnavailableError: they did not finish within ``timeout_s``: the
                cluster's CPUs are held by other tasks (a training step on the Ray
                executor holds its own), or its nodes are too slow for the budget.
        """
        refs = [self._default.remote(name, self._data, self._kind, self._metric) for name in names]
        try:
            found: list[_flaml.RawTrial] = self._ray.get(refs, timeout=max(timeout_s, 1.0))
        except self._ray.exceptions.GetTimeoutError as exc:
            for ref in refs:
                self._ray.cancel(ref, force=True)
            raise ServiceUnavailableError(
                f"no trial finished on the Ray cluster at {self._where} within "
                f"{max(timeout_s, 1.0):.0f} s: its {self.slots} CPUs may be held by other "
                "tasks (a training step on the Ray executor holds its own)",
                details={"address": self._where},
            ) from exc
        return found

    def search(
        self,
        names: list[str],
        *,
        seed: int,
        max_iter: int | None,
        budget_s: float,
        time_left: Callable[[], float],
        on_trial: Callable[[_flaml.RawTrial], None],
        start: bool,
    ) -> None:
        """Search ``names`` in one part per CPU (``split_search``) at once; hand each trial
        to ``on_trial`` as it arrives, and after each batch post ``time_left()`` (no
        deadline under a trial cap) as the deadline."""
        ray = self._ray
        parts = split_search(names, self.slots, seed, max_iter)
        if max_iter is not None:
            time_left = _no_deadline
        mailbox = ray.remote(num_cpus=0)(_Mailbox).remote(time.time() + budget_s)
        pending = [
            self._part.remote(
                self._data,
                part,
                mailbox,
                kind=self._kind,
                metric=self._metric,
                budget_s=budget_s,
                start=start,
            )
            for part in parts
        ]
        try:
            pending = self._follow(pending, mailbox, time_left, on_trial)
            for raw in ray.get(mailbox.take.remote()):
                on_trial(raw)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.kill(mailbox)

    def _follow(
        self,
        pending: list[Any],
        mailbox: Any,
        time_left: Callable[[], float],
        on_trial: Callable[[_flaml.RawTrial], None],
    ) -> list[Any]:
        """Pass trials on until every part ended, or the deadline passed and the parts had
        ``STOP_GRACE_S`` to end; returns the parts still running."""
        ray = self._ray
        stop_at = math.inf
        while pending and time.monotonic() < stop_at:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
            ray.get(done)  # a part's error ends the search with it
            for raw in ray.get(mailbox.take.remote()):
                on_trial(raw)
            if stop_at < math.inf:
                continue
            left = time_left()
            deadline = time.time() + left if math.isfinite(left) else 1e18
            mailbox.set_deadline.remote(deadline, left <= 0)
            if left <= 0:
                stop_at = time.monotonic() + STOP_GRACE_S
        return pending
