"""Domain core: ids, names, keys, domain types, the error hierarchy and the pure policies
(gate rules, who may carry an alias, canary judgement, retries and DAG unblocking, automation
concurrency). No I/O; the bottom layer, importing nothing of loopml."""

from loopml.core.errors import (
    AlreadyExistsError as AlreadyExistsError,
)
from loopml.core.errors import (
    BadRequestError as BadRequestError,
)
from loopml.core.errors import (
    ConfigurationError as ConfigurationError,
)
from loopml.core.errors import (
    ConflictError as ConflictError,
)
from loopml.core.errors import (
    InvalidPathError as InvalidPathError,
)
from loopml.core.errors import (
    LoopmlError as LoopmlError,
)
from loopml.core.errors import (
    NotFoundError as NotFoundError,
)
from loopml.core.errors import (
    PayloadTooLargeError as PayloadTooLargeError,
)
from loopml.core.errors import (
    PermissionDeniedError as PermissionDeniedError,
)
from loopml.core.errors import (
    ServiceUnavailableError as ServiceUnavailableError,
)
from loopml.core.errors import (
    UnsupportedMediaTypeError as UnsupportedMediaTypeError,
)
from loopml.core.errors import (
    ValidationError as ValidationError,
)
