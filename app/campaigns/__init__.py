"""Campaigns: a merchant's funded budget and a versioned set of rebate rules over a time window."""
