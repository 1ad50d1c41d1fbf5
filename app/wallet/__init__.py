"""A consumer's wallet: balances from the ledger's cached accounts and a timeline that says why."""
