"""What loopml asks of the operating system, below every capability: whether a process runs
and how a child is stopped (``processes``), a child that dies with its parent (``lifeline``),
the heap of a long-running process (``heap``), and the server's log files (``logfiles``).
`core` stays free of I/O; this is where it went."""
