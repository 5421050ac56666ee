"""The metadata database: ``MetadataStore`` plus one repository module per entity.

Repositories take a ``Session`` from ``MetadataStore.session()`` and return core domain
objects; ORM rows never leave this package.
"""

from loopml.core.errors import WroteWhileReadingError as WroteWhileReadingError
from loopml.store import datasets as datasets
from loopml.store import deployments as deployments
from loopml.store import events as events
from loopml.store import experiments as experiments
from loopml.store import gates as gates
from loopml.store import ingest_keys as ingest_keys
from loopml.store import lake_tables as lake_tables
from loopml.store import lineage as lineage
from loopml.store import logged_models as logged_models
from loopml.store import model_tags as model_tags
from loopml.store import model_versions as model_versions
from loopml.store import models as models
from loopml.store import pipeline_queue as pipeline_queue
from loopml.store import pipeline_runs as pipeline_runs
from loopml.store import pipeline_workers as pipeline_workers
from loopml.store import pipelines as pipelines
from loopml.store import projects as projects
from loopml.store import run_cleanup as run_cleanup
from loopml.store import run_logs as run_logs
from loopml.store import run_search as run_search
from loopml.store import runs as runs
from loopml.store import streams as streams
from loopml.store import transforms as transforms
from loopml.store import validation_reports as validation_reports
from loopml.store._checks import check_actor as check_actor
from loopml.store._checks import check_text as check_text
from loopml.store._migrate import head_revision as head_revision
from loopml.store.db import MetadataStore as MetadataStore
