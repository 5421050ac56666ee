"""``loopml.start_run``: experiment tracking from users' own training code.

Example:
    >>> import loopml
    >>> with loopml.start_run(experiment="churn") as run:
    ...     run.log_params({"lr": 0.1})
    ...     for step in range(100):
    ...         run.log_metrics({"loss": 1 / (step + 1)}, step=step)

The same code logs to a server (``url=``, or ``LOOPML_CLIENT_URL``) or, with neither,
straight into the embedded store under ``LOOPML_HOME``. Metric points are buffered and sent
by a background thread every ``flush_interval_s`` or 1,000 points, whichever comes first;
the same thread sends heartbeats, so a run whose process dies is marked LOST.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loopml.sdk.backends import EmbeddedBackend, HttpBackend
from loopml.train.tracking.active import ActiveRun, start_run_on
from loopml.train.tracking.backend import TrackingBackend

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.settings import Settings

__all__ = ["ActiveRun", "start_run", "start_run_on"]


def _backend(
    project: str, url: str | None, client: Client | None, settings: Settings | None
) -> TrackingBackend:
    if client is not None:
        return HttpBackend(client, project)
    from loopml.settings import Settings

    settings = settings or Settings()
    if url is None and "url" in settings.client.model_fields_set:
        url = settings.client.url
    if url is not None:
        from loopml.client import Client

        token = settings.token.get_secret_value() if settings.token else None
        return HttpBackend(Client(url, timeout=settings.client.timeout_s, token=token), project)
    return embedded_backend(settings, project)


def embedded_backend(settings: Settings, project: str) -> EmbeddedBackend:
    """The stores ``settings`` name, opened here (the SDK's composition root) with the schema
    upgraded if need be, as an ``EmbeddedBackend``."""
    from loopml.wiring import open_artifact_store, open_metadata_store

    store = open_metadata_store(settings)
    store.prepare()
    return EmbeddedBackend(store, open_artifact_store(settings), settings, project)


def start_run(
    experiment: str,
    *,
    project: str | None = None,
    name: str | None = None,
    url: str | None = None,
    client: Client | None = None,
    settings: Settings | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    inputs: list[str] | None = None,
    parent_run_id: str | None = None,
    heartbeat_interval_s: float = 10.0,
    heartbeat_timeout_s: int | None = None,
    flush_interval_s: float = 1.0,
) -> ActiveRun:
    """Start a run of ``experiment`` (created if missing) and return it, RUNNING.

    The first argument is the experiment (the group of runs), not the run:
    ``start_run("churn", name="baseline")`` is the run ``baseline`` of experiment
    ``churn``. Spelling both as keywords reads unambiguously:
    ``start_run(experiment="churn", name="baseline")``.

    Args:
        experiment: the experiment's name, such as ``"churn"``.
        project: the project's name; default the ``project`` setting (``LOOPML_PROJECT``),
            else ``default``.
        name: the run's own name, such as ``"baseline"`` (default ``run-`` and the first
            8 characters of its id).
        url: a loopml server; default ``LOOPML_CLIENT_URL``, else the embedded store.
        client: a ready ``loopml.client.Client`` to log through (wins over ``url``).
        settings: settings for the embedded store (default: from the environment).
        params: parameters logged with the run's creation.
        tags: tags set with the run's creation.
        inputs: dataset snapshot ids the run reads.
        parent_run_id: the run this one is nested in.
        heartbeat_interval_s: how often the background thread says the run is alive.
        heartbeat_timeout_s: after how long without a heartbeat the run is LOST; default
            the server's (or the settings') ``tracking.heartbeat_timeout_s``.
        flush_interval_s: how often buffered metric points are sent.

    Raises:
        ValidationError: a bad name, param, tag or input.
        ServiceUnavailableError: the server or database cannot be reached.
    """
    if project is None:
        from loopml.settings import Settings

        settings = settings or Settings()
        project = settings.project or "default"
    backend = _backend(project, url, client, settings)
    return start_run_on(
        backend,
        experiment,
        name=name,
        params=params,
        tags=tags,
        inputs=inputs,
        parent_run_id=parent_run_id,
        heartbeat_interval_s=heartbeat_interval_s,
        heartbeat_timeout_s=heartbeat_timeout_s,
        flush_interval_s=flush_interval_s,
    )
