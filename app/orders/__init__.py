"""Orders registered by a merchant's shop, and their lifecycle (shipped, received, after-sales)."""
