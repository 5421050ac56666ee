"""``python -m loopml.serve``: one model-server process (see ``loopml.serve.worker``)."""

import sys

from loopml.serve.worker import main

sys.exit(main())
