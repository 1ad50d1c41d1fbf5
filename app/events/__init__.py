"""Domain events: emitted inside the transaction that made them true, once, to in-process subscribers."""
