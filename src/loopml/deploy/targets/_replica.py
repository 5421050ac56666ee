"""``python -m loopml.deploy.targets._replica --parent-pid PID -- WORKER-ARGS``: one model
server (``loopml.serve.server.process``), tied to the platform process that supervises it.

On Linux the process asks the kernel to send it SIGTERM when its parent goes away
(``prctl(PR_SET_PDEATHSIG)``), so a platform that is killed, even with SIGKILL, leaves no
orphaned replicas holding ports and memory; SIGTERM is the model server's graceful stop.
Elsewhere this is a plain ``python -m loopml.serve``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from loopml.system.lifeline import die_with_parent


def main(argv: Sequence[str] | None = None) -> int:
    """Run the model server given after ``--``; exit 0 at once if the parent is gone."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[0] != "--parent-pid" or args[2] != "--":
        print("usage: --parent-pid PID -- WORKER-ARGS", file=sys.stderr)
        return 2
    if not die_with_parent(int(args[1])):
        return 0
    from loopml.serve.server.process import main as serve

    return serve(args[3:])


if __name__ == "__main__":
    sys.exit(main())
