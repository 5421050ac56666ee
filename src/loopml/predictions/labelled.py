"""Labelled predictions: a deployment's answers joined with the labels sent back for them,
as a lake table a retrain can learn from.

``refresh`` applies one SQL transform (``data.transforms``, so the run records the exact
prediction-log and feedback versions it read, and ``loopml transforms lineage`` shows them)
into ``labelled_table(deployment)``: one row per labelled answer, the request's inputs as
typed columns (their types read from the log's JSON), the label (typed: boolean, integer,
float or text, as every label is), then the lineage columns ``LINEAGE_COLUMNS``: the
inference id and row, the model version that answered and when, and when the label came.
Shadow answers are left out (the client never saw them); a row labelled twice keeps its
newest label. Each refresh replaces the table with the join over everything logged so far:
the transform's run says which versions it read.

A retrain after a drift learns the relation that holds now: ``since`` keeps what it trains on
to the answers made since a moment, by default (``drift_onset``) the onset of the
deployment's newest drift whose labels are in (its ``drift.labelled`` event). The answers
before it, labelled under the old relation, would otherwise outvote the shifted ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from loopml.core.deployments import feedback_table, labelled_table, prediction_table
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.transforms import TransformRun
from loopml.data import lake
from loopml.data.sources import materialize
from loopml.settings import LakeSettings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events

LINEAGE_COLUMNS = (
    "inference_id",
    "row_index",
    "model",
    "model_version",
    "predicted_at",
    "labelled_at",
)
"""The columns that trace a row back to its answer: not features, so ``training_sql``
leaves them out."""

_INTEGER = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)
_FLOAT = {"HUGEINT", "DOUBLE", "FLOAT", "DECIMAL"}


@dataclass(frozen=True)
class Labelled:
    """One refresh: the transform run that wrote the table, and how to train on it."""

    run: TransformRun
    features: dict[str, str]
    target: str
    since: datetime | None = None
    """Only the answers made at or after this are trained on (``None``: all)."""

    @property
    def table(self) -> str:
        """The version written, as ``table@version``."""
        return str(self.run.output)

    @property
    def training_sql(self) -> str:
        """The version written without its lineage columns: what a snapshot learns from."""
        lineage = ", ".join(LINEAGE_COLUMNS)
        where = ""
        if self.since is not None:
            moment = self.since.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
            where = f" WHERE predicted_at >= TIMESTAMP '{moment}'"
        return f"SELECT * EXCLUDE ({lineage}) FROM {self.table}{where}"  # noqa: S608


def drift_onset(store: MetadataStore, project: str, deployment: str) -> datetime | None:
    """The onset of ``deployment``'s newest drift whose labels are in: the ``since`` of its
    newest ``drift.labelled`` event (``None`` when it never had one)."""
    cursor = None
    with store.session() as session:
        while True:
            page = events.list_(
                session,
                type="drift.labelled",
                project=project,
                newest_first=True,
                cursor=cursor,
                limit=1000,
            )
            for event in page.items:
                if event.payload.get("deployment") == deployment:
                    moment = datetime.fromisoformat(str(event.payload["since"]))
                    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            if page.next_cursor is None:
                return None
            cursor = page.next_cursor


def refresh(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    deployment: str,
    *,
    target: str = "label",
    actor: str,
    lake_settings: LakeSettings | None = None,
    since: datetime | None = None,
) -> Labelled:
    """Write ``deployment``'s labelled answers into its labelled table (see the module);
    the table holds them all, ``training_sql`` the ones answered at or after ``since``.

    Raises:
        NotFoundError: the deployment has served nothing, or has no label yet.
        ValidationError: ``target`` or an input is named like a lineage column, or an
            input's name holds a quote.
    """
    from loopml.data import transforms

    predictions, feedback = prediction_table(deployment), feedback_table(deployment)
    _exists(store, artifacts, project, predictions, "no prediction logged yet")
    _exists(store, artifacts, project, feedback, "no label sent back yet (POST .../feedback)")
    features = _input_types(store, artifacts, project, predictions)
    _check_names(features, target)
    sql = _sql(predictions, feedback, features, _label(store, artifacts, project, feedback), target)
    into = labelled_table(deployment)
    run = transforms.apply(
        store,
        artifacts,
        project,
        into,
        sql=sql,
        into=into,
        mode="overwrite",
        description=f"The answers of deployment {deployment!r} joined with their labels.",
        actor=actor,
        lake_settings=lake_settings,
    )
    return Labelled(run=run, features=features, target=target, since=since)


def _exists(
    store: MetadataStore, artifacts: ArtifactStore, project: str, table: str, why: str
) -> None:
    try:
        found = lake.get_table(store, artifacts, project, table)
    except NotFoundError:
        found = None
    if found is None or found.version < 0:
        raise NotFoundError(
            f"no labelled predictions for {table.rsplit('__', 1)[0]!r}: {why}",
            details={"table": table},
        )


def _input_types(
    store: MetadataStore, artifacts: ArtifactStore, project: str, predictions: str
) -> dict[str, str]:
    """The logged inputs' names and SQL types, from the JSON of every answered row."""
    import orjson

    sql = (
        "SELECT json_group_structure(inputs::JSON) AS s "  # noqa: S608
        f"FROM {predictions} WHERE role <> 'shadow'"
    )
    found = materialize(store, artifacts, project, sql).table.column("s").to_pylist()
    structure = orjson.loads(found[0]) if found and found[0] else {}
    if not isinstance(structure, dict):
        return {}
    return {name: _sql_type(kind) for name, kind in structure.items()}


def _sql_type(kind: object) -> str:
    if not isinstance(kind, str) or kind == "NULL":
        return "VARCHAR"
    base = kind.split("(")[0]
    if base in _INTEGER:
        return "BIGINT"
    if base in _FLOAT:
        return "DOUBLE"
    return "BOOLEAN" if base == "BOOLEAN" else "VARCHAR"


def _label(store: MetadataStore, artifacts: ArtifactStore, project: str, feedback: str) -> str:
    """The label's SQL expression: boolean, integer or float when every label is one."""
    sql = (
        "SELECT count(*) AS n, count(label_value) AS numbers, "  # noqa: S608
        "count(*) FILTER (WHERE label_value = floor(label_value)) AS whole, "
        "count(*) FILTER (WHERE label IN ('true', 'false')) AS flags "
        f"FROM {feedback}"
    )
    row = materialize(store, artifacts, project, sql).table.to_pylist()[0]
    if row["n"] and row["flags"] == row["n"]:
        return "l.label = 'true'"
    if row["n"] and row["whole"] == row["n"]:
        return "CAST(l.label_value AS BIGINT)"
    if row["n"] and row["numbers"] == row["n"]:
        return "l.label_value"
    return "l.label"


def _check_names(features: dict[str, str], target: str) -> None:
    taken = set(LINEAGE_COLUMNS)
    if not target or '"' in target or "'" in target:
        raise ValidationError(
            f"invalid label column {target!r}: expected a name without quotes",
            details={"field": "target"},
        )
    if target in taken or target in features:
        raise ValidationError(
            f"the label column {target!r} is taken by "
            f"{'a lineage column' if target in taken else 'an input'}: name it otherwise "
            "(target)",
            details={"field": "target", "taken": sorted(taken | set(features))[:100]},
        )
    clash = sorted(taken & set(features))
    odd = sorted(n for n in features if '"' in n or "'" in n)
    if clash or odd:
        raise ValidationError(
            f"the logged inputs {clash or odd} cannot be columns of the labelled table: "
            f"{'names of its lineage columns' if clash else 'a quote in the name'}; rename "
            "the model's inputs",
            details={"columns": clash or odd},
        )


def _sql(predictions: str, feedback: str, features: dict[str, str], label: str, target: str) -> str:
    inputs = "".join(
        f'    TRY_CAST(json_extract_string(p.inputs, \'$."{name}"\') AS {kind}) AS "{name}",\n'
        for name, kind in features.items()
    )
    return (
        "WITH answered AS (\n"  # noqa: S608
        f"  SELECT * FROM {predictions} WHERE role <> 'shadow'\n"
        "  QUALIFY row_number() OVER (PARTITION BY inference_id, row_index ORDER BY ts) = 1\n"
        "), labels AS (\n"
        f"  SELECT * FROM {feedback}\n"
        "  QUALIFY row_number() OVER (\n"
        "    PARTITION BY inference_id, row_index ORDER BY received_at DESC) = 1\n"
        ")\n"
        "SELECT\n"
        f"{inputs}"
        f'    {label} AS "{target}",\n'
        "    p.inference_id, p.row_index, p.model, p.model_version,\n"
        "    p.ts AS predicted_at, l.received_at AS labelled_at\n"
        "FROM answered AS p\n"
        "JOIN labels AS l ON l.inference_id = p.inference_id AND l.row_index = p.row_index\n"
        "ORDER BY p.ts, p.inference_id, p.row_index"
    )
