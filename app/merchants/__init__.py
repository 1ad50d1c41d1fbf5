"""Merchants (tenants): identity, WeChat credentials (sealed at rest), payout and settlement policy."""
