"""Plain MLflow tracking code through the calls the other scripts leave out: the client's
own run and artifact calls, experiment lifecycle through both faces, nested runs, dataset
inputs, tables, streams and (MLflow 3) logged models through the fluent API.

Usage: python tracking_tour.py PREFIX ; prints one JSON object.
"""

import io
import json
import os
import sys
import tempfile
import time

import mlflow
import mlflow.data
import pandas as pd
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

prefix = sys.argv[1]
client = MlflowClient()
three = mlflow.__version__.startswith("3.")
out = {}

# Experiments, through the client and the fluent API.
exp_id = client.create_experiment(f"{prefix}-a", tags={"kind": "tour"})
client.rename_experiment(exp_id, f"{prefix}-b")
if three:
    client.set_experiment_tag(exp_id, "tmp", "x")
    client.delete_experiment_tag(exp_id, "tmp")
client.delete_experiment(exp_id)
client.restore_experiment(exp_id)
fluent_id = mlflow.create_experiment(f"{prefix}-c")
mlflow.delete_experiment(fluent_id)
if three:
    mlflow.restore_experiment(fluent_id)
else:
    client.restore_experiment(fluent_id)
mlflow.set_experiment(experiment_id=exp_id)
mlflow.set_experiment_tags({"owner": "ada"})
if three:
    mlflow.set_experiment_tag("tmp", "y")
    mlflow.delete_experiment_tag("tmp")
got = mlflow.get_experiment(exp_id)
out["experiment"] = {
    "name": got.name,
    "by_name": mlflow.get_experiment_by_name(f"{prefix}-b").experiment_id == exp_id,
    "tags": sorted(k for k in got.tags if not k.startswith("mlflow.")),
    "found": [e.name for e in mlflow.search_experiments(filter_string=f"name = '{prefix}-b'")],
}

# A run through the client: create, log, update, terminate.
run = client.create_run(exp_id, run_name="client-run", tags={"team": "risk"})
run_id = run.info.run_id
client.log_param(run_id, "lr", "0.1")
client.log_metric(run_id, "loss", 0.5, step=0)
now = int(time.time() * 1000)
client.log_batch(
    run_id,
    metrics=[Metric("loss", 0.25, now, 1), Metric("acc", 0.9, now, 0)],
    params=[Param("depth", "3")],
    tags=[RunTag("stage", "dev")],
)
client.set_tag(run_id, "tmp", "x")
client.delete_tag(run_id, "tmp")
dataset = Dataset(name="frame", digest="d1", source_type="local", source='{"uri": "x.csv"}')
client.log_inputs(run_id, [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train")])])
with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, "one.txt"), "w") as f:
        f.write("one\n")
    client.log_artifact(run_id, os.path.join(tmp, "one.txt"), "files")
    client.log_artifacts(run_id, tmp, "copied")
client.log_text(run_id, "text", "t.txt")
client.log_dict(run_id, {"a": 1}, "d.json")
client.log_table(run_id, {"x": [1, 2], "y": ["a", "b"]}, "table.json")
table = client.load_table(exp_id, "table.json", run_ids=[run_id])
if three:
    client.log_stream(run_id, io.BytesIO(b"streamed"), "stream.bin")
client.update_run(run_id, name="client-run-2")
client.set_terminated(run_id, "FINISHED")
done = client.get_run(run_id)
out["client_run"] = {
    "name": done.info.run_name,
    "status": done.info.status,
    "params": done.data.params,
    "metrics": done.data.metrics,
    "tags": sorted(k for k in done.data.tags if not k.startswith("mlflow.")),
    "inputs": [d.dataset.name for d in done.inputs.dataset_inputs],
    "artifacts": sorted(a.path for a in client.list_artifacts(run_id)),
    "table": sorted(table["x"].tolist()),
}

# Nested fluent runs, dataset inputs and tables.
with mlflow.start_run(run_name="parent") as parent:
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame({"a": [1.0]}), name="frame2"))
        if three:
            frame3 = mlflow.data.from_pandas(pd.DataFrame({"b": [2.0]}), name="frame3")
            mlflow.log_inputs([frame3], contexts=["eval"], tags_list=[{}])
        mlflow.log_table({"x": [3]}, "fluent_table.json")
        if three:
            mlflow.log_stream(io.BytesIO(b"s"), "fluent_stream.bin")
        mlflow.set_tag("tmp", "x")
        mlflow.delete_tag("tmp")
    mlflow.end_run()  # ends the parent early, as plain code may
fluent_table = mlflow.load_table("fluent_table.json", run_ids=[child.info.run_id])
out["nested"] = {
    "parent": client.get_parent_run(child.info.run_id).info.run_id == parent.info.run_id,
    "fluent_parent": mlflow.get_parent_run(child.info.run_id).info.run_id == parent.info.run_id,
    "last": mlflow.last_active_run().info.run_id == parent.info.run_id,
    "child_inputs": sorted(
        d.dataset.name for d in mlflow.get_run(child.info.run_id).inputs.dataset_inputs
    ),
    "table": fluent_table["x"].tolist(),
}
mlflow.delete_run(child.info.run_id)
hidden = child.info.run_id not in [r.info.run_id for r in client.search_runs([exp_id])]
(mlflow.restore_run if three else client.restore_run)(child.info.run_id)
found = mlflow.search_runs([exp_id], "attributes.run_name = 'child'", output_format="list")
out["nested"]["deleted_hidden"] = hidden
out["nested"]["found"] = [r.info.run_name for r in found]

# Runs by their times, in the milliseconds the client reads back.
start, end = done.info.start_time, done.info.end_time
by_time = {
    f"attributes.start_time = {start}": True,
    f"attributes.start_time <= {start}": True,
    f"attributes.start_time > {start}": False,
    f"attributes.end_time >= {end} and attributes.end_time < {end + 1}": True,
    f"attributes.end_time < {start}": False,
}
out["by_time"] = {
    text: run_id in [r.info.run_id for r in client.search_runs([exp_id], text)] for text in by_time
}
out["by_time_expected"] = by_time

# MLflow 3: logged models through the fluent API, outputs, a single file.
if three:
    with mlflow.start_run() as run3:
        model = mlflow.initialize_logged_model(name="tour-model", params={"k": "1"})
        mlflow.log_model_params({"lr": "0.2"}, model_id=model.model_id)
        mlflow.set_logged_model_tags(model.model_id, {"team": "risk", "tmp": "x"})
        mlflow.delete_logged_model_tag(model.model_id, "tmp")
        mlflow.finalize_logged_model(model.model_id, "READY")
        external = mlflow.create_external_model(name="tour-external")
        mlflow.set_active_model(name="tour-active")
        from mlflow.entities import LoggedModelOutput

        mlflow.log_outputs([LoggedModelOutput(model.model_id, 0)])
        client.log_outputs(run3.info.run_id, [LoggedModelOutput(external.model_id, 1)])
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "weights.txt"), "w") as f:
                f.write("w\n")
            client.log_model_artifact(model.model_id, os.path.join(tmp, "weights.txt"))
    got = mlflow.get_logged_model(model.model_id)
    last = mlflow.last_logged_model()
    searched = mlflow.search_logged_models(
        [exp_id], filter_string="name = 'tour-model'", output_format="list"
    )
    outputs = client.get_run(run3.info.run_id).outputs.model_outputs
    client.delete_logged_model(external.model_id)
    gone = [m.model_id for m in client.search_logged_models([exp_id])]
    out["logged"] = {
        "params": got.params,
        "tags": sorted(k for k in got.tags if not k.startswith("mlflow.")),
        "status": str(got.status),
        "last": last is not None,
        "found": [m.model_id for m in searched] == [model.model_id],
        "external_deleted": external.model_id not in gone,
        # loopml answers every model created in the run (docs/mlflow.md), MLflow those named
        "outputs": {model.model_id, external.model_id} <= {o.model_id for o in outputs},
        "files": [a.path for a in client.list_logged_model_artifacts(model.model_id)],
    }
print(json.dumps(out))
