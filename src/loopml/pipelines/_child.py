"""The process the local executor runs one attempt in:
``python -m loopml.pipelines._child TASK.json RESULT.json``.

Its stdout and stderr are the attempt's log. It writes the outcome to ``RESULT.json``
(atomically, by rename) and exits; it never writes to the queue itself, so only the worker,
holding the lease and its token, commits a result. It exits at once if the worker that
started it dies, so a killed worker leaves no step running behind its back.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

WATCH_INTERVAL_S = 0.2
ORPHANED_EXIT_CODE = 70


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            # The worker died: nobody holds the lease any more, so nothing here may go on.
            os._exit(ORPHANED_EXIT_CODE)
        time.sleep(WATCH_INTERVAL_S)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    """Run the task in ``argv[1]``, write its outcome to ``argv[2]``."""
    parent = int(argv[3]) if len(argv) > 3 else os.getppid()
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from loopml.pipelines._run_step import run_step
    from loopml.pipelines._step import StepContext
    from loopml.pipelines.base import StepTask
    from loopml.settings import ClientSettings, Settings

    task = StepTask.from_json(Path(argv[1]).read_text(encoding="utf-8"))
    for entry in reversed(task.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    # No client section: training records straight into the store, never over HTTP.
    settings = Settings.model_validate(task.settings).model_copy(
        update={"client": ClientSettings()}
    )
    with tempfile.TemporaryDirectory(prefix="loopml-step-") as work:
        ctx = StepContext(
            project=task.project,
            project_id=task.project_id,
            pipeline=task.pipeline,
            run_id=task.run_id,
            step=task.step,
            step_run_id=task.step_run_id,
            attempt=task.attempt,
            settings=settings,
            work_dir=Path(work),
            api_url=task.api_url,
        )
        try:
            outcome = run_step(task, ctx)
        finally:
            ctx.close()
    sys.stdout.flush()
    _write(Path(argv[2]), outcome.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
