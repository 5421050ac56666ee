"""DuckDB, for the modules that import it where it is first needed (so that ``loopml up``
starts without it): always after ``pyarrow.dataset``. DuckDB decides once, when it first
looks, whether Arrow's dataset module is there; imported before it, DuckDB refused an Arrow
dataset a query reads ("not suitable for replacement scans")."""

from __future__ import annotations

# isort: off
import pyarrow.dataset  # noqa: F401  (first: see the module's docstring)
import duckdb as duckdb
# isort: on
