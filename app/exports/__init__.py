"""Exports of the merchant's books as CSV or Excel: small ones at once, long ones as RQ jobs with progress."""
