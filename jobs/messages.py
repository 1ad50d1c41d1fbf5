"""Messages to consumers: the sweep that owes them, the job that sends one."""

from __future__ import annotations

from app.extensions import db
from app.messages import service


def collect() -> int:
    made = service.collect()
    db.session.commit()
    return made


def send(message_id: int) -> str:
    return service.send(message_id).value
