"""``python -m loopml.serve.gateway``: one gateway process (see ``process``)."""

import sys

from loopml.serve.gateway.process import main

sys.exit(main())
