"""Stream sources: NATS JetStream and Redis Streams consumed into lake tables, exactly once.

``service`` defines streams (create, list, pause, resume, delete); ``consumer`` runs one;
``supervisor`` runs a consumer process per stream for ``loopml up`` and ``loopml worker``.
The broker clients (nats-py, redis) are imported only by the backend a stream uses.
"""
