"""Prometheus metrics: counters the code moves (``instruments``), figures read at scrape time from
PostgreSQL and Redis (``collectors``), and ``GET /metrics`` (``views``). See docs/operations.md, "Metrics".

Under gunicorn (and beside the worker) set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by
the processes of one machine: every process then writes its counters there and ``/metrics`` adds them up.
"""
