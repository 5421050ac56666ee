"""SQLAlchemy ORM of the metadata schema. Rows never leave ``loopml.store``."""

from loopml.store.orm.base import Base as Base
from loopml.store.orm.base import EntityMixin as EntityMixin
from loopml.store.orm.base import UTCDateTime as UTCDateTime
from loopml.store.orm.events import EventRow as EventRow
from loopml.store.orm.projects import ProjectRow as ProjectRow
