"""Console endpoints that act on other domains for a merchant's staff: consumer bans, merchant policy."""
