"""Users, roles per project, API tokens, the permission table and the checks that use it.

May import ``loopml.core`` and ``loopml.store`` only. See docs/security.md.
"""
