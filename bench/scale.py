"""Scale-out figures (issue 37, "Figures"): batch scoring's rows/s on the local path against
the Ray path on 1 node of 1 CPU and on 2 nodes of 1 CPU each, in one run, with the ratios.

A fresh embedded home; a logistic regression over 8 columns (``cancer``, registered through
the SDK) scores a lake table of ``--rows`` rows written in ``--files`` appends (one Delta file
each, row groups of 256 Ki rows). Each cell is one ``score_table`` call into its own output
table, timed around the call: the model's load, the reads, the scoring and the output's
commit, and on Ray the actors' start too. The Ray cluster is real: ``ray start`` nodes
(``tests/ray_cluster.py``), ended by their pids afterwards.

Issue targets: 2 nodes >= 1.6x the rows/s of 1 node; 1 node >= 0.8x the local path. The
nodes share this machine's cores with the driver (the server's process, which writes the
output), so on a 2-core machine the 2-node figure measures the cores too.

Run ``python bench/scale.py [--rows 2000000] [--files 8]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _table(rows: int, seed: int = 0) -> Any:
    """``rows`` rows like the cancer data's first 8 columns (resampled, with noise)."""
    import numpy as np
    import pyarrow as pa
    from tests.unit.deploy.deploy_support import cancer_frame

    frame, _ = cancer_frame()
    rng = np.random.default_rng(seed)
    picked = frame.to_numpy()[rng.integers(0, len(frame), rows)]
    noisy = picked * rng.normal(1.0, 0.02, picked.shape)
    return pa.table({name: noisy[:, i] for i, name in enumerate(frame.columns)})


def _cell(name: str, call: Any, rows: int) -> float:
    """Rows/s of one call; also when its first rows were scored (the model's load, and on
    Ray the actors' start, come before)."""
    first: list[float] = []
    started = time.perf_counter()

    def progress(_: int) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    result = call(progress)
    seconds = time.perf_counter() - started
    assert result.rows == rows, (result.rows, rows)
    print(
        f"  {name:<22} {seconds:7.2f} s  {rows / seconds:>10,.0f} rows/s  "
        f"(first rows after {first[0]:.2f} s)",
        flush=True,
    )
    return rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=8)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="loopml-scale-"))
    try:
        _run(home, args.rows, args.files)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(home: Path, rows: int, files: int) -> None:
    from tests.conftest import free_port
    from tests.ray_cluster import RayCluster
    from tests.unit.deploy.deploy_support import fit, register_model

    from loopml.core.executors import RayExecutorConfig
    from loopml.data import lake
    from loopml.predictions.batch import score_table
    from loopml.predictions.ray_batch import RayTarget
    from loopml.settings import Settings
    from loopml.wiring import open_artifact_store, open_metadata_store

    settings = Settings(home=home)
    store = open_metadata_store(settings)
    store.upgrade()
    artifacts = open_artifact_store(settings)
    register_model(settings, store, artifacts, fit(1.0))
    table = _table(rows)
    step = -(-rows // files)
    for start in range(0, rows, step):
        lake.ingest_arrow(store, artifacts, "default", "big", table.slice(start, step), actor="b")
    written = len(lake.open_delta(store, artifacts, "default", "big").file_uris())
    print(f"batch scoring {rows:,} rows ({written} Delta files), {os.cpu_count()} cores")

    def score(output: str, target: RayTarget | None = None) -> Any:
        return lambda progress: score_table(
            store,
            artifacts,
            "default",
            input="big",
            output=output,
            workdir=home / "work",
            actor="b",
            model="cancer/1",
            ray=target,
            progress=progress,
        )

    local = _cell("local (in process)", score("out_local"), rows)
    cluster = RayCluster.start(free_port())
    import ray

    try:
        executor = RayExecutorConfig(type="ray", address=cluster.address)
        on_ray = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"executor": executor})}
        )
        target = RayTarget.of(on_ray)
        one = _cell("ray, 1 node x 1 CPU", score("out_ray1", target), rows)
        cluster.add_node("second", num_cpus=1)
        two = _cell("ray, 2 nodes x 1 CPU", score("out_ray2", target), rows)
    finally:
        ray.shutdown()
        cluster.stop()
    print(f"ray 1 node / local:  {one / local:.2f}x  (target >= 0.8x)")
    print(f"ray 2 nodes / 1 node: {two / one:.2f}x  (target >= 1.6x)")


if __name__ == "__main__":
    main()
