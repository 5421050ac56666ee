"""Pipelines: workflow specs (YAML), their DAG, built-in steps, the run queue in the metadata
DB, and the workers that claim steps with leases and fencing tokens.

This module stays light: a step's child process imports it first.
"""

from loopml.pipelines._step import StepContext as StepContext
from loopml.pipelines._step import step as step
