"""Consumers' browsing trail (views, carts, shares), kept for fake-order risk signals."""
