"""The merchant's dashboard: money from the ledger, the campaigns' funnel, over a date range."""
