"""The prediction log and everything that reads or writes it: the sink interface the model
server records through (``sink``), the platform's own log (``log``), a replica's batched HTTP
sink (``http_sink``), the rows both write (``_rows``), the labels that arrive later
(``feedback``) and batch scoring (``batch``).

This is the seam ``monitor/`` reads: it depends on no serving program.
"""
