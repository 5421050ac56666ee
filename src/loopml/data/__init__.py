"""Data: lake tables (Delta Lake in the artifact store) and file ingest."""
