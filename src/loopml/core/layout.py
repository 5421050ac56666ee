"""Where things live in the artifact store: one place, so every package agrees.

Everything a project owns lives under its id (not its name), so a project created later
under the same name never sees a deleted one's files.
"""

from __future__ import annotations

CURRENT_PROJECT_FILE = "current_project"
"""Under the home folder, not the artifact store: the project ``loopml use`` chose (a backup
carries it)."""
DISK_RESERVE_FILE = "disk.reserve"
"""Under the home folder: the space kept for freeing space on a full disk
(``server.disk_reserve_bytes``); never backed up."""


def project_prefix(project_id: str) -> str:
    """Everything a project owns."""
    return f"projects/{project_id}"


def project_artifacts_prefix(project_id: str) -> str:
    """Files uploaded to the project directly (``/projects/{p}/artifacts``)."""
    return f"{project_prefix(project_id)}/artifacts"


def runs_prefix(project_id: str) -> str:
    """The folder holding every run's files of a project."""
    return f"{project_prefix(project_id)}/runs"


def run_artifacts_prefix(project_id: str, run_id: str) -> str:
    """A run's artifacts (its logged models among them)."""
    return f"{runs_prefix(project_id)}/{run_id}/artifacts"


def lake_table_prefix(project_id: str, table_id: str) -> str:
    """A lake table's Delta folder (Parquet files and ``_delta_log``), keyed by ids so a
    table created later under a deleted one's name starts empty."""
    return f"{project_prefix(project_id)}/lake/{table_id}"


def dataset_prefix(project_id: str, dataset_id: str) -> str:
    """A dataset's files (every version's Parquet and split parts), keyed by ids so a dataset
    created later under a deleted one's name starts empty."""
    return f"{project_prefix(project_id)}/datasets/{dataset_id}"


def dataset_version_prefix(project_id: str, dataset_id: str, version_id: str) -> str:
    """One dataset version's files: ``data.parquet``, and its split's parts in a folder of
    their own."""
    return f"{dataset_prefix(project_id, dataset_id)}/{version_id}"


def mlflow_model_prefix(project_id: str, model_id: str) -> str:
    """The files of a model an MLflow 3 client logged (``/logged-models``), MLflow's format."""
    return f"{project_prefix(project_id)}/mlflow-models/{model_id}"


def codeset_archive_key(project_id: str, content_hash: str) -> str:
    """A codeset version's files as one archive, named by its content hash: immutable, and
    shared by every codeset of the project that holds the same tree."""
    return f"{project_prefix(project_id)}/codesets/{content_hash}.tar.gz"
