"""Merchant staff and platform admins: accounts, roles per merchant, console sessions."""
