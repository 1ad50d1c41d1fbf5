"""Hongli's side of the WeChat boundary: per-merchant clients built from settings and sealed
credentials, WeChat failures mapped to domain errors, and (later) the gateway event log."""
