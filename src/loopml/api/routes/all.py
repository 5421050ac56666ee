"""Every router module of the API, in the order the app includes them (health first): one
list for the platform's app and for `bench/startup.py`'s bare app of the same routes."""

from __future__ import annotations

from types import ModuleType

from loopml.api.routes import (
    artifacts,
    auth,
    codesets,
    datasets,
    deployments,
    events,
    experiments,
    features,
    feedback,
    gate,
    health,
    logs,
    models,
    monitor,
    pipelines,
    predictions,
    projects,
    runs,
    schedules,
    sql,
    streams,
    tables,
    transforms,
    triggers,
)

MODULES: tuple[ModuleType, ...] = (
    health,
    auth,
    feedback,
    predictions,
    projects,
    events,
    logs,
    artifacts,
    experiments,
    runs,
    models,
    gate,
    sql,
    tables,
    datasets,
    transforms,
    deployments,
    pipelines,
    schedules,
    triggers,
    codesets,
    streams,
    features,
    monitor,
)
