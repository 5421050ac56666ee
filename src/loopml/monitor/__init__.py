"""Monitoring: reference profiles (``reference``, ``sketch``), drift statistics (``drift``),
windows over the prediction log and feedback (``windows``, ``usage``, ``quality``, read by
``reader`` from their lake tables), the loop (``engine``), drift episodes and alert rules
(``episodes``), webhooks, Prometheus gauges (``metrics``), a version's figures for canaries
(``compare``) and the services the API and portal call (``service``). See
docs/monitoring.md.

Above ``serve`` and the prediction log, below ``deploy`` (whose canaries it judges): it emits
events and never starts a run.
"""
