"""The ``loopml`` command line. Heavy libraries are imported inside commands, so
``loopml --help`` stays fast."""
