"""The built-in steps' implementations, each a thin call into the capability it wraps.

Their parameters and output types are declared in ``loopml.pipelines.catalog``; each is
called as ``fn(ctx, **params)`` in the step's process with its references resolved and its
typed inputs pinned to exact versions (``sales@7``, ``churn_snap@3``, ``churn/4``).
"""
