"""Background work on Redis + RQ: named queues, enqueue-after-commit, the worker and periodic jobs.

Jobs are referred to by dotted path (``"jobs.maintenance.record_heartbeat"``) so ``app`` never
imports ``jobs``.
"""

from app.queue.after_commit import enqueue_after_commit
from app.queue.queues import QueueName, get_queue, get_redis

__all__ = ["QueueName", "enqueue_after_commit", "get_queue", "get_redis"]
