"""Executor backends, one module each: ``local`` (a child process of the worker) and
``ray`` (a Ray task on a cluster, imported only when configured)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loopml.core.executors import LocalExecutorConfig, RayExecutorConfig
from loopml.pipelines.base import StepExecutor
from loopml.settings import Settings


def _local(config: Any, settings: Settings) -> StepExecutor:
    from loopml.pipelines.backends.local import LocalExecutor

    return LocalExecutor(config)


def _ray(config: Any, settings: Settings) -> StepExecutor:
    from loopml.pipelines.backends.ray import RayExecutor

    return RayExecutor(config, settings)


_BACKENDS: dict[str, Callable[[Any, Settings], StepExecutor]] = {"local": _local, "ray": _ray}


def open_executor(
    config: LocalExecutorConfig | RayExecutorConfig, settings: Settings
) -> StepExecutor:
    """The executor ``config.type`` names, for a worker started with ``settings``.

    Raises:
        ConfigurationError: the executor cannot run here (Ray not installed, or a cluster
            on other machines that cannot reach this worker's local files).
    """
    return _BACKENDS[config.type](config, settings)
