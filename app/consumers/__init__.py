"""Consumers (WeChat users of one merchant): identities per app, logins, sessions."""
