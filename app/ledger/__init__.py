"""The double-entry ledger: the source of truth for every fen of rebates, budgets and payouts."""
