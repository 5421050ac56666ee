"""The Python SDK's user-facing pieces: ``start_run`` (``tracking``), ``train_model``
(``training``), where a run's records go (``backends``: a server over HTTP, or the embedded
store) and ``python -m loopml.sdk.fetch`` (a verified package download, as the Kubernetes
initContainer runs it). ``loopml.start_run`` and ``loopml.train_model`` re-export them lazily.

Above ``portal`` and ``api`` in the layers, but it imports neither: it reaches a server
through ``loopml.client`` and the embedded store through ``registry`` and ``train``.
"""
