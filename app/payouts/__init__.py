"""Payouts: money leaving for a consumer's WeChat change, at most once per bill number, on either rail."""
