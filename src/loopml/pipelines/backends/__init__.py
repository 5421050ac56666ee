"""Executor backends, one module each (``local``; Ray is not built yet)."""
