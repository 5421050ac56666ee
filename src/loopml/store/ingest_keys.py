"""Repository: ingest_keys (being written)."""
