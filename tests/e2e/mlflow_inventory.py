"""Every public MLflow tracking and registry call of the pinned clients, and where the
compatibility suite answers for it.

Each public method of ``MlflowClient`` and each fluent ``mlflow.<name>`` function of MLflow's
tracking and registry modules (``mlflow_record.FLUENT_MODULES``), in any client version the
suite pins, is in exactly one of:

- ``COVERED``: the example script that calls it itself; every recorded run of that script
  (against loopml and against MLflow's server) must show the call (``check_calls``);
- ``SAME_CALLS``: a client-side wrapper that ends in the REST calls of a covered one, which
  the suite cannot run without a library it does not install (the reason says which);
- ``UNSUPPORTED``: a row of docs/mlflow.md's "What is not supported" table (a text its first
  column holds) that names what loopml answers instead;
- ``CLIENT_SIDE``: why it makes no REST call of its own.

``test_mlflow_inventory.py`` fails when a client's public name is in none of these (a new
client version's new call is noticed), when a name is listed twice or in no pinned client,
when a script does not name the call it is listed for, or when an unsupported row is not
in the docs.
"""

from __future__ import annotations

from collections.abc import Iterable

C = "MlflowClient."
F = "mlflow."

COVERED: dict[str, str] = {
    # experiments
    C + "create_experiment": "experiments.py",
    C + "get_experiment": "experiments.py",
    C + "search_experiments": "experiments.py",
    C + "set_experiment_tag": "experiments.py",
    C + "delete_experiment_tag": "tracking_tour.py",
    C + "rename_experiment": "tracking_tour.py",
    C + "delete_experiment": "tracking_tour.py",
    C + "restore_experiment": "tracking_tour.py",
    C + "get_experiment_by_name": "inspect_runs.py",
    F + "set_experiment": "track.py",
    F + "set_experiment_tag": "experiments.py",
    F + "set_experiment_tags": "tracking_tour.py",
    F + "delete_experiment_tag": "tracking_tour.py",
    F + "create_experiment": "tracking_tour.py",
    F + "get_experiment": "tracking_tour.py",
    F + "get_experiment_by_name": "tracking_tour.py",
    F + "search_experiments": "tracking_tour.py",
    F + "delete_experiment": "tracking_tour.py",
    F + "restore_experiment": "tracking_tour.py",
    # runs
    C + "create_run": "tracking_tour.py",
    C + "get_run": "inspect_runs.py",
    C + "get_parent_run": "tracking_tour.py",
    C + "update_run": "tracking_tour.py",
    C + "set_terminated": "tracking_tour.py",
    C + "delete_run": "inspect_runs.py",
    C + "restore_run": "inspect_runs.py",
    C + "search_runs": "inspect_runs.py",
    C + "log_metric": "tracking_tour.py",
    C + "log_param": "tracking_tour.py",
    C + "set_tag": "tracking_tour.py",
    C + "delete_tag": "tracking_tour.py",
    C + "log_batch": "tracking_tour.py",
    C + "log_inputs": "tracking_tour.py",
    C + "log_outputs": "tracking_tour.py",
    C + "get_metric_history": "inspect_runs.py",
    F + "start_run": "track.py",
    F + "end_run": "tracking_tour.py",
    F + "last_active_run": "tracking_tour.py",
    F + "get_run": "tracking_tour.py",
    F + "get_parent_run": "tracking_tour.py",
    F + "delete_run": "tracking_tour.py",
    F + "restore_run": "tracking_tour.py",
    F + "search_runs": "tracking_tour.py",
    F + "log_param": "track.py",
    F + "log_params": "track.py",
    F + "log_metric": "track.py",
    F + "log_metrics": "track.py",
    F + "set_tag": "track.py",
    F + "set_tags": "track.py",
    F + "delete_tag": "tracking_tour.py",
    F + "log_input": "tracking_tour.py",
    F + "log_inputs": "tracking_tour.py",
    F + "log_outputs": "tracking_tour.py",
    # artifacts
    C + "log_artifact": "tracking_tour.py",
    C + "log_artifacts": "tracking_tour.py",
    C + "log_text": "tracking_tour.py",
    C + "log_dict": "tracking_tour.py",
    C + "log_table": "tracking_tour.py",
    C + "load_table": "tracking_tour.py",
    C + "log_stream": "tracking_tour.py",
    C + "list_artifacts": "inspect_runs.py",
    C + "download_artifacts": "inspect_runs.py",
    F + "log_artifact": "track.py",
    F + "log_artifacts": "track.py",
    F + "log_text": "track.py",
    F + "log_dict": "track.py",
    F + "log_table": "tracking_tour.py",
    F + "load_table": "tracking_tour.py",
    F + "log_stream": "tracking_tour.py",
    # MLflow 3 logged models
    C + "create_logged_model": "logged_models.py",
    C + "get_logged_model": "logged_models.py",
    C + "finalize_logged_model": "logged_models.py",
    C + "log_model_params": "logged_models.py",
    C + "set_logged_model_tags": "logged_models.py",
    C + "delete_logged_model_tag": "logged_models.py",
    C + "log_model_artifacts": "logged_models.py",
    C + "list_logged_model_artifacts": "logged_models.py",
    C + "search_logged_models": "logged_models.py",
    C + "log_model_artifact": "tracking_tour.py",
    C + "delete_logged_model": "tracking_tour.py",
    F + "initialize_logged_model": "tracking_tour.py",
    F + "create_external_model": "tracking_tour.py",
    F + "set_active_model": "tracking_tour.py",
    F + "last_logged_model": "tracking_tour.py",
    F + "get_logged_model": "tracking_tour.py",
    F + "log_model_params": "tracking_tour.py",
    F + "set_logged_model_tags": "tracking_tour.py",
    F + "delete_logged_model_tag": "tracking_tour.py",
    F + "finalize_logged_model": "tracking_tour.py",
    F + "search_logged_models": "tracking_tour.py",
    # registry
    C + "create_registered_model": "registry_tour.py",
    C + "get_registered_model": "registry_search.py",
    C + "update_registered_model": "registry_tour.py",
    C + "rename_registered_model": "registry_search.py",
    C + "delete_registered_model": "registry_tour.py",
    C + "search_registered_models": "registry_search.py",
    C + "set_registered_model_tag": "registry_search.py",
    C + "delete_registered_model_tag": "registry_tour.py",
    C + "create_model_version": "log_and_register.py",
    C + "copy_model_version": "registry_tour.py",
    C + "get_model_version": "stages.py",
    C + "update_model_version": "registry_tour.py",
    C + "delete_model_version": "registry_tour.py",
    C + "search_model_versions": "registry_search.py",
    C + "set_model_version_tag": "registry_search.py",
    C + "delete_model_version_tag": "registry_tour.py",
    C + "get_model_version_download_uri": "registry_tour.py",
    C + "get_latest_versions": "stages.py",
    C + "transition_model_version_stage": "stages.py",
    C + "set_registered_model_alias": "promote.py",
    C + "get_model_version_by_alias": "promote.py",
    C + "delete_registered_model_alias": "registry_tour.py",
    F + "register_model": "register.py",
    F + "search_registered_models": "registry_tour.py",
    F + "search_model_versions": "registry_tour.py",
    F + "set_model_version_tag": "registry_tour.py",
}

SAME_CALLS: dict[str, tuple[str, str]] = {
    C + "log_figure": (C + "log_artifact", "saves a matplotlib figure, not installed"),
    C + "log_image": (C + "log_artifact", "saves an image with Pillow, not installed"),
    F + "log_figure": (C + "log_artifact", "saves a matplotlib figure, not installed"),
    F + "log_image": (C + "log_artifact", "saves an image with Pillow, not installed"),
}

_TRACES = "traces, prompts"
_GENAI = "workspaces, MCP servers"

UNSUPPORTED: dict[str, str] = {
    **{
        C + name: _TRACES
        for name in [
            "start_trace",
            "end_trace",
            "start_span",
            "end_span",
            "get_trace",
            "search_traces",
            "delete_traces",
            "set_trace_tag",
            "delete_trace_tag",
            "link_traces_to_run",
            "unlink_traces_from_run",
            "log_assessment",
            "update_assessment",
            "delete_assessment",
            "link_prompt_versions_to_trace",
            "register_prompt",
            "load_prompt",
            "delete_prompt",
            "set_prompt_alias",
            "delete_prompt_alias",
            "log_prompt",
            "list_logged_prompts",
            "detach_prompt_from_run",
            "create_prompt",
            "create_prompt_version",
            "get_prompt",
            "get_prompt_version",
            "get_prompt_version_by_alias",
            "delete_prompt_version",
            "delete_prompt_tag",
            "delete_prompt_version_tag",
            "set_prompt_tag",
            "set_prompt_version_tag",
            "search_prompts",
            "search_prompt_versions",
            "link_prompt_version_to_model",
            "link_prompt_version_to_run",
            "create_dataset",
            "get_dataset",
            "delete_dataset",
            "search_datasets",
            "set_dataset_tags",
            "delete_dataset_tag",
            "add_dataset_to_experiments",
            "remove_dataset_from_experiments",
            "create_webhook",
            "get_webhook",
            "list_webhooks",
            "update_webhook",
            "delete_webhook",
            "test_webhook",
        ]
    },
    **{
        F + name: _TRACES
        for name in [
            "register_prompt",
            "load_prompt",
            "search_prompts",
            "delete_prompt",
            "set_prompt_alias",
            "delete_prompt_alias",
        ]
    },
    **{
        C + name: _GENAI
        for name in [
            "create_workspace",
            "get_workspace",
            "list_workspaces",
            "update_workspace",
            "delete_workspace",
            "create_mcp_server",
            "get_mcp_server",
            "update_mcp_server",
            "delete_mcp_server",
            "search_mcp_servers",
            "create_mcp_server_version",
            "get_mcp_server_version",
            "update_mcp_server_version",
            "delete_mcp_server_version",
            "search_mcp_server_versions",
            "get_latest_mcp_server_version",
            "get_mcp_server_version_by_alias",
            "set_mcp_server_alias",
            "delete_mcp_server_alias",
            "set_mcp_server_tag",
            "delete_mcp_server_tag",
            "set_mcp_server_version_tag",
            "delete_mcp_server_version_tag",
            "refresh_mcp_server_version_tools",
            "create_mcp_access_endpoint",
            "get_mcp_access_endpoint",
            "update_mcp_access_endpoint",
            "delete_mcp_access_endpoint",
            "search_mcp_access_endpoints",
        ]
    },
}

CLIENT_SIDE: dict[str, str] = {
    C + "get_model_version_stages": "returns MLflow's four stage names, a constant",
    C + "parse_prompt_uri": "parses a prompts:/ URI string",
    C + "get_workspace_store_uri": "returns the URI the client was configured with",
    F + "active_run": "the run this process started, kept by the client",
    F + "get_artifact_uri": "built from the active run's artifact_uri the client holds",
    F + "autolog": "patches ML libraries; what they log goes through the log_* calls above",
    F + "flush_async_logging": "waits for the client's own queue of log_batch calls",
    F + "flush_artifact_async_logging": "waits for the client's own queue of artifact uploads",
    F + "flush_trace_async_logging": "waits for the client's own queue of traces",
    F + "get_active_model_id": "the logged model set_active_model chose, kept by the client",
    F + "clear_active_model": "forgets the active model in the client",
    F + "import_checkpoints": "refused by the client outside Databricks (Unity Catalog volumes)",
}


def script_of(name: str) -> str | None:
    """The example script that answers for ``name`` (directly or through ``SAME_CALLS``)."""
    if name in SAME_CALLS:
        name = SAME_CALLS[name][0]
    return COVERED.get(name)


def listed() -> list[str]:
    """Every name the inventory lists, with repeats (a name in two lists appears twice)."""
    return [*COVERED, *SAME_CALLS, *UNSUPPORTED, *CLIENT_SIDE]


def check_calls(script: str, public: Iterable[str], calls: Iterable[list[str]]) -> None:
    """A recorded run of ``script`` (``mlflow_record.py``) made every call ``COVERED``
    lists for it that its client has (``public``)."""
    made = {name for name, _ in calls}
    wanted = {name for name, where in COVERED.items() if where == script} & set(public)
    missing = sorted(wanted - made)
    assert not missing, f"{script} is listed for {missing} but did not call them"
