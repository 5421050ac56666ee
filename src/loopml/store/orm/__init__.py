"""SQLAlchemy ORM of the metadata schema. Rows never leave ``loopml.store``."""

from loopml.store.orm.base import Base as Base
from loopml.store.orm.base import EntityMixin as EntityMixin
from loopml.store.orm.base import UTCDateTime as UTCDateTime
from loopml.store.orm.datasets import DatasetRow as DatasetRow
from loopml.store.orm.datasets import DatasetVersionRow as DatasetVersionRow
from loopml.store.orm.datasets import IngestKeyRow as IngestKeyRow
from loopml.store.orm.datasets import TransformRow as TransformRow
from loopml.store.orm.datasets import TransformRunRow as TransformRunRow
from loopml.store.orm.events import EventRow as EventRow
from loopml.store.orm.lake import LakeTableRow as LakeTableRow
from loopml.store.orm.projects import ProjectRow as ProjectRow
from loopml.store.orm.registry import ModelAliasRow as ModelAliasRow
from loopml.store.orm.registry import ModelTagRow as ModelTagRow
from loopml.store.orm.registry import ModelVersionRow as ModelVersionRow
from loopml.store.orm.registry import ModelVersionTagRow as ModelVersionTagRow
from loopml.store.orm.registry import RegisteredModelRow as RegisteredModelRow
from loopml.store.orm.tracking import ExperimentRow as ExperimentRow
from loopml.store.orm.tracking import LatestMetricRow as LatestMetricRow
from loopml.store.orm.tracking import LoggedModelRow as LoggedModelRow
from loopml.store.orm.tracking import MetricRow as MetricRow
from loopml.store.orm.tracking import ParamRow as ParamRow
from loopml.store.orm.tracking import RunInputRow as RunInputRow
from loopml.store.orm.tracking import RunRow as RunRow
from loopml.store.orm.tracking import RunTagRow as RunTagRow
from loopml.store.orm.validation import ValidationReportRow as ValidationReportRow
