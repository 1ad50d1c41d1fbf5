"""Export jobs: write one requested CSV/Excel export into Redis, telling its progress as it goes."""

from __future__ import annotations

from app.exports import service


def build_export(export_id: str) -> str:
    """Build the export ``export_id`` (a finished or expired one is left alone)."""
    return service.build_export(export_id)
