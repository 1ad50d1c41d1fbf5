"""Limits kept in counter rows: taken with one conditional UPDATE, never summed then compared."""
