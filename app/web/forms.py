"""Reading the console's forms: into the JSON API's own schemas, amounts in yuan into fen (by Money)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from flask import request
from marshmallow import ValidationError

from app.core.errors import InvalidInput
from app.core.money import Money

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


def load(schema: Any, data: dict[str, Any]) -> dict[str, Any]:
    """A form, shaped as the API's JSON body, loaded by the API's own schema (422 naming the fields)."""
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        raise InvalidInput("invalid input", details={"fields": exc.messages}) from None
    return loaded


def fen(field: str, *, required: bool = True) -> int | None:
    """The form's ``field`` in yuan (``"12.34"``, commas allowed) as fen; None when optional and empty."""
    text = request.form.get(field, "").strip().replace(",", "")
    if not text and not required:
        return None
    try:
        return Money.from_yuan(text).fen
    except ValueError:
        raise InvalidInput(
            "not an amount in yuan", details={"fields": {field: ["yuan, at most two decimals"]}}
        ) from None


def local_time(field: str) -> str:
    """A ``datetime-local`` field, read as Beijing time, as RFC 3339 (422 naming the field otherwise)."""
    text = request.form.get(field, "").strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("not a date and time", details={"fields": {field: ["YYYY-MM-DDTHH:MM"]}}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BEIJING)
    return moment.isoformat()
