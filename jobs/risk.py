"""Risk control's jobs: the Redis cache of linked-account groups written again from the database; groups
merged once two accounts seen with one identifier at the same moment are both committed."""

from __future__ import annotations

from rq import get_current_job

from app.core.db import utcnow
from app.extensions import db
from app.risk.links import held_by_others, merge, refresh_group_cache
from app.risk.models import LinkKind


class NotLinkedYet(Exception):
    """Redis saw another consumer with the identifier, whose link is not committed yet: ask again later."""


def refresh_groups() -> int:
    """Every linked group's members and size cached again (Redis is the fast path, the database the record)."""
    return refresh_group_cache()


def merge_seen(merchant_id: int, consumer_id: int, kind: str, digest: str) -> bool:
    """Merge ``consumer_id``'s group with those of the others seen with (kind, digest), whose links were
    being committed when the consumer's decision was written. Retried (RQ, its retry intervals) while
    no other link is there; after the last try it gives up quietly: the other claim never committed
    (it was rolled back), so there is nothing to merge. True when merged."""
    link_kind = LinkKind(kind)
    if not held_by_others(merchant_id, consumer_id, link_kind, digest):
        job = get_current_job()
        if job is not None and job.retries_left:
            raise NotLinkedYet(f"no other consumer's {kind} link committed yet")
        return False
    merge(merchant_id, consumer_id, link_kind, digest, utcnow())
    db.session.commit()
    return True
