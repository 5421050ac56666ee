"""The metadata database: ``MetadataStore`` plus one repository module per entity.

Repositories take a ``Session`` from ``MetadataStore.session()`` and return core domain
objects; ORM rows never leave this package.
"""

from loopml.store import events as events
from loopml.store import projects as projects
from loopml.store.db import MetadataStore as MetadataStore
