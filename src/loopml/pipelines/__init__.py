"""Pipelines: workflow specs (YAML), their DAG, built-in steps, the run queue in the metadata
DB, the workers that claim steps with leases and fencing tokens, step executors (local,
Ray), schedules and triggers, codesets and the ready-made loops (``loops``).

Above ``client`` on purpose: steps that act on the platform (deploy, watch a canary) go
through the API, so a worker on another machine acts as the embedded one does.

This module stays light: a step's child process imports it first.
"""

from loopml.pipelines._step import StepContext as StepContext
from loopml.pipelines._step import step as step
