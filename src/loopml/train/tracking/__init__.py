"""Experiment tracking: experiments, runs, what they log, their files and logged models.

Services over the metadata store and the artifact store; the API, the SDK's embedded
backend and the server's housekeeping all call these.
"""

from loopml.train.tracking import artifacts as artifacts
from loopml.train.tracking.runs import create_experiment as create_experiment
from loopml.train.tracking.runs import delete_run as delete_run
from loopml.train.tracking.runs import end_run as end_run
from loopml.train.tracking.runs import ensure_experiment as ensure_experiment
from loopml.train.tracking.runs import get_experiment as get_experiment
from loopml.train.tracking.runs import get_run as get_run
from loopml.train.tracking.runs import heartbeat as heartbeat
from loopml.train.tracking.runs import list_experiments as list_experiments
from loopml.train.tracking.runs import log_batch as log_batch
from loopml.train.tracking.runs import metric_history as metric_history
from loopml.train.tracking.runs import resume_run as resume_run
from loopml.train.tracking.runs import search_experiments as search_experiments
from loopml.train.tracking.runs import search_runs as search_runs
from loopml.train.tracking.runs import set_experiment_tag as set_experiment_tag
from loopml.train.tracking.runs import start_run as start_run
from loopml.train.tracking.runs import sweep_lost_runs as sweep_lost_runs
