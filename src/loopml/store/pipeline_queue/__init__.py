"""The step queue: claims with a lease, heartbeats, results fenced by a token, and the sweep
that takes back expired leases.

A claim turns one QUEUED step whose ``next_attempt_at`` has come into RUNNING, owned by the
claiming worker until ``lease_expires_at``, and adds one to its ``fencing_token``. On
PostgreSQL the candidate is picked with ``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent
claimers never wait on, or take, the same row; on SQLite the transaction's ``BEGIN
IMMEDIATE`` makes claims single-writer.

Every later write by the worker (``heartbeat``, ``start``, ``complete``, ``fail``,
``cancelled``, ``release``) names the token it was given and only changes a row that is
still RUNNING under that token: when the lease expired and the step was handed to another
worker, the write changes nothing and returns ``False`` (RELIABILITY 19). ``sweep`` settles
expired leases like a retryable failure, under the step's retry policy (RELIABILITY 18, 20).

The queue is one import for the worker; its parts live by role: ``_claims`` (claim, lease,
heartbeat, the fence), ``_results`` (the fenced writes of a result), ``_sweep`` (expired
leases) and ``_cache`` (the step cache). What a result does to the step and its run is
decided by ``loopml.core.pipeline_policy``.
"""

from loopml.store.pipeline_queue._cache import cached_outputs as cached_outputs
from loopml.store.pipeline_queue._cache import forget as forget
from loopml.store.pipeline_queue._claims import Beat as Beat
from loopml.store.pipeline_queue._claims import Claim as Claim
from loopml.store.pipeline_queue._claims import RunContext as RunContext
from loopml.store.pipeline_queue._claims import claim as claim
from loopml.store.pipeline_queue._claims import context as context
from loopml.store.pipeline_queue._claims import heartbeat as heartbeat
from loopml.store.pipeline_queue._claims import mark_run_started as mark_run_started
from loopml.store.pipeline_queue._claims import start as start
from loopml.store.pipeline_queue._results import cancelled as cancelled
from loopml.store.pipeline_queue._results import complete as complete
from loopml.store.pipeline_queue._results import fail as fail
from loopml.store.pipeline_queue._results import release as release
from loopml.store.pipeline_queue._sweep import SWEEP_BATCH as SWEEP_BATCH
from loopml.store.pipeline_queue._sweep import sweep as sweep
