"""What `loopml --help` says of each lazily imported command (``loopml.cli.main``): the
first paragraph of its help, so that listing the commands imports none of their modules
(they brought pydantic models, Rich and the gate's rules into every `--help`: 0.40 s of its
0.43 s). ``tests/unit/cli/test_help.py`` keeps each line equal to its command's own help."""

from __future__ import annotations

SUMMARIES: dict[str, str] = {
    "projects": "Create, list and delete projects.",
    "artifacts": "Upload, download, list and delete a project's files.",
    "db": "Manage the metadata database.",
    "runs": "List, show and compare training runs.",
    "experiments": "List and create experiments (groups of runs).",
    "models": "Registered models: versions, aliases, lineage; garbage collection.",
    "tables": "List, inspect and delete a project's lake tables.",
    "datasets": "Snapshot tables or SQL as immutable dataset versions; profile and split them.",
    "transforms": "A project's SQL transforms.",
    "deployments": "Deployments: status, revisions, logs, scale, rollback, delete.",
    "pipelines": "Pipelines: workflow specs and their runs.",
    "schedules": "Schedules: cron-started pipeline runs.",
    "triggers": "Triggers: event- and webhook-started pipeline runs.",
    "streams": "Streams: NATS JetStream, Redis Streams and Kafka into lake tables.",
    "features": "Feature views, point-in-time training sets and online feature values.",
    "codesets": "Codesets: immutable, content-addressed versions of a folder or a git commit.",
    "users": "Users and their roles in projects (create-admin works on the server's side).",
    "tokens": (
        "Your API tokens: create, list, revoke; a platform admin finds and revokes anyone's "
        "by prefix."
    ),
    "alerts": "Alert rules: list, create, delete, silence.",
    "up": "Start loopml: API and embedded defaults (SQLite, local artifact folder).",
    "ingest": "Ingest a CSV, Parquet or JSON Lines file into a table (created on first ingest).",
    "events": "Show the event feed, newest first (or follow it).",
    "gc": "Delete the artifacts of deleted projects and runs (server-wide).",
    "sql": "Run read-only SQL over a project's lake tables.",
    "train": (
        "Train a model on a dataset snapshot's frozen split; with --register, add it to the "
        "registry and score it on the frozen eval set (what `loopml models gate` judges)."
    ),
    "deploy": "Deploy a model: `loopml deploy churn@champion --name churn --replicas 2`.",
    "predict": "Score a table or a file with a deployment's (or a model's) version, into a table.",
    "worker": (
        "Run pipeline steps: claim them from the metadata database, run each in a child "
        "process (or a Ray task: --executor ray), renew its lease, commit its result. SIGTERM"
        " or Ctrl-C stops it; running steps are stopped and given back to the queue."
    ),
    "demo": (
        "Run the whole loop on a demo project: ingest, train, deploy, traffic, new data, retrain."
    ),
    "login": "Log in to the server: the new token is stored for the CLI (0600).",
    "use": "Choose the project that commands use when given no -p (LOOPML_PROJECT wins over it).",
    "down": (
        "Stop the running `loopml up` of this home (LOOPML_HOME): deployments' replicas and "
        "workers stop with it; what it stored stays."
    ),
    "status": (
        "Where things stand: server, deployments and their state, latest pipeline runs, and "
        "the alert rules that are firing or about to."
    ),
    "monitor": (
        "Show a deployment's monitoring: the serving version's usage, latency, drift, live "
        "quality, replica resources, alerts (the figures the portal's page shows)."
    ),
    "logs": (
        "Print (or follow) the log of a deployment's replicas, of a pipeline run's steps, or "
        "of the server itself."
    ),
    "backup": (
        "Back up the whole platform into DEST while it runs: the metadata database, the "
        "artifact store and lake tables, the online store and the settings (without secrets "
        "unless --include-secrets). A backup into the same DEST stores only what changed."
    ),
    "restore": (
        "Restore a snapshot into the empty home, database and artifact store the settings "
        "name (LOOPML_HOME, LOOPML_DATABASE_URL, LOOPML_ARTIFACTS_ROOT). Every file is "
        "checked against its hash first; a damaged backup is refused and nothing is written."
    ),
}
