"""Artifact store backends, one module each: ``local`` (a folder) and ``s3`` (a bucket)."""
