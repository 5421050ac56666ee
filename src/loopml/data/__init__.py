"""Data: ingest (files, HTTP records, stream consumers in ``streams``), lake tables
(Delta Lake in the artifact store), the DuckDB warehouse, contracts, datasets and splits,
transforms, and the feature store (``features``). Above ``packaging``, below ``backup`` and
``train``."""
