"""Withdrawals: a consumer asks for available money; review, then a payout sends it to WeChat change."""
