"""loopml: the whole machine-learning loop in one self-hosted install."""

from loopml._version import __version__

__all__ = ["__version__"]
