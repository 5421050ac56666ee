"""``python -m loopml.serve``: one model-server process (see ``loopml.serve.server.process``)."""

import sys

from loopml.serve.server.process import main

sys.exit(main())
