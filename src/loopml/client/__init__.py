"""The Python SDK over HTTP. Imports only ``loopml.core``; errors are rebuilt as their class."""

from loopml.client.client import Client as Client
