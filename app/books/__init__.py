"""The merchant's books in the console: its money (from the ledger), orders and consumers; budget deposits."""
