"""The HTTP client over the API: ``Client``, one module per resource; an error comes
back as its loopml class. Above every capability and below ``pipelines``, whose steps act
on the platform through it; it imports ``loopml.core``, and ``loopml.storage.codetree`` to
pack a codeset, nothing else."""

from loopml.client.client import Client as Client
