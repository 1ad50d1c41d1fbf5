"""gunicorn settings for Hongli's web processes: ``gunicorn -c python:app.metrics.gunicorn …``.

With ``PROMETHEUS_MULTIPROC_DIR`` set, a gunicorn worker that exits has its live-gauge files removed
(prometheus-client's multiprocess mode); its counters stay, so totals never go backwards.
"""

from __future__ import annotations

import os
from typing import Any


def child_exit(_server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
