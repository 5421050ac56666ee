"""What a fresh interpreter has imported after one statement: the tests that hold start-up
imports down (the platform's, the monitor's) ask it in a subprocess, as a user's process
would start."""

from __future__ import annotations

import json
import subprocess
import sys


def modules_after(statement: str) -> set[str]:
    """The names in ``sys.modules`` of a new interpreter once ``statement`` has run."""
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))
