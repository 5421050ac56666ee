"""The compute cluster loopml joins (Ray): its connection and the checks on its reach."""
