"""The feature store: feature views, point-in-time training sets, the online store.

``views`` applies and reads view specs; ``offline`` joins views onto an entity table as of
each row's time (a dataset version); ``online`` holds each entity's newest values behind
``OnlineStore`` (SQLite embedded, Redis at scale) and ``materialize`` fills it.
"""
