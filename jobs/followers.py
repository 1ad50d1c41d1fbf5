"""Follower jobs: the welcome after a follow, and the sweep for followers left unlinked."""

from __future__ import annotations

from app.extensions import db
from app.followers import service


def welcome(follower_id: int, message_id: int, scene_id: int | None, first_follow: bool) -> None:
    service.welcome(follower_id, message_id, scene_id, first_follow)
    db.session.commit()


def resolve_unlinked() -> int:
    queued = service.resolve_unlinked()
    db.session.commit()
    return queued
