"""CSV and Excel (openpyxl) exports of orders, rebates, payouts, reconciliation differences and the audit log.

Rows are read in id order in batches (keyset), so an export of any length holds one batch in memory
besides the file it writes. Money is exported as integer fen (``*_fen`` columns), exactly as stored.
A cell that a spreadsheet would read as a formula (``= + - @``, tab, CR) is prefixed with ``'``.

An export of more than :data:`DIRECT_MAX_ROWS` rows runs as a job (``jobs.exports.build_export``): its
state, progress and file live in Redis for :data:`KEEP_SECONDS` (no table: an export is a copy of rows
that are already kept, and any process — web or worker — reads it from the same Redis).
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from openpyxl import Workbook
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.audit.service import Actor, record_audit
from app.core.errors import InvalidInput, NotFound
from app.core.money import Money
from app.extensions import db
from app.orders.models import Order
from app.payouts.models import Payout
from app.queue import QueueName, enqueue_after_commit, get_redis
from app.rebates.models import RebateGrant
from app.reviews.models import ReviewItem

BATCH = 1000
DIRECT_MAX_ROWS = 5000
KEEP_SECONDS = 24 * 3600
FORMATS = ("csv", "xlsx")
MIME = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
JOB = "jobs.exports.build_export"


@dataclass(frozen=True)
class Kind:
    model: Any
    columns: tuple[tuple[str, Callable[[Any], Any]], ...]
    only: Callable[[int], Any] | None = None  # further WHERE for the merchant's rows


def _fen(value: Money | None) -> int | None:
    return value.fen if isinstance(value, Money) else value


def _enum(value: Any) -> Any:
    return getattr(value, "value", value)


KINDS: dict[str, Kind] = {
    "orders": Kind(
        Order,
        (
            ("id", lambda o: o.id),
            ("out_order_no", lambda o: o.out_order_no),
            ("consumer_id", lambda o: o.consumer_id),
            ("status", lambda o: _enum(o.status)),
            ("total_fen", lambda o: _fen(o.total)),
            ("discount_fen", lambda o: _fen(o.discount)),
            ("paid_fen", lambda o: _fen(o.paid_amount)),
            ("refunded_fen", lambda o: _fen(o.refunded)),
            ("paid_at", lambda o: o.paid_at),
            ("created_at", lambda o: o.created_at),
        ),
    ),
    "rebates": Kind(
        RebateGrant,
        (
            ("id", lambda g: g.id),
            ("created_at", lambda g: g.created_at),
            ("campaign_id", lambda g: g.campaign_id),
            ("rule_id", lambda g: g.rule_id),
            ("order_id", lambda g: g.order_id),
            ("beneficiary", lambda g: g.beneficiary),
            ("consumer_id", lambda g: g.consumer_id),
            ("amount_fen", lambda g: _fen(g.amount)),
            ("reversed_fen", lambda g: _fen(g.reversed)),
            ("status", lambda g: _enum(g.status)),
            ("settled_at", lambda g: g.settled_at),
            ("basis", lambda g: g.basis),
        ),
    ),
    "payouts": Kind(
        Payout,
        (
            ("id", lambda p: p.id),
            ("bill_no", lambda p: p.bill_no),
            ("consumer_id", lambda p: p.consumer_id),
            ("source", lambda p: f"{p.source_type}:{p.source_id}"),
            ("rail", lambda p: _enum(p.rail)),
            ("amount_fen", lambda p: _fen(p.amount)),
            ("fee_fen", lambda p: _fen(p.fee)),
            ("status", lambda p: _enum(p.status)),
            ("wechat_state", lambda p: p.wechat_state),
            ("failure_code", lambda p: p.failure_code),
            ("created_at", lambda p: p.created_at),
            ("finished_at", lambda p: p.finished_at),
        ),
    ),
    "reconciliation": Kind(
        ReviewItem,
        (
            ("id", lambda r: r.id),
            ("reference", lambda r: r.reference),
            ("difference", lambda r: r.reason),
            ("wechat_fen", lambda r: (r.details or {}).get("wechat_fen")),
            ("hongli_fen", lambda r: (r.details or {}).get("hongli_fen")),
            ("detail", lambda r: (r.details or {}).get("detail")),
            ("status", lambda r: _enum(r.status)),
            ("created_at", lambda r: r.created_at),
        ),
        only=lambda _m: ReviewItem.kind == "reconciliation",
    ),
    "audit": Kind(
        AuditEntry,
        (
            ("id", lambda e: e.id),
            ("created_at", lambda e: e.created_at),
            ("actor_type", lambda e: e.actor_type),
            ("actor_id", lambda e: e.actor_id),
            ("action", lambda e: e.action),
            ("target_type", lambda e: e.target_type),
            ("target_id", lambda e: e.target_id),
            ("before", lambda e: json.dumps(e.before, ensure_ascii=False) if e.before is not None else None),
            ("after", lambda e: json.dumps(e.after, ensure_ascii=False) if e.after is not None else None),
            ("ip", lambda e: e.ip),
            ("request_id", lambda e: e.request_id),
        ),
    ),
}


def kind_of(name: str, fmt: str) -> Kind:
    if name not in KINDS or fmt not in FORMATS:
        raise NotFound("no such export")
    return KINDS[name]


def _where(kind: Kind, merchant_id: int) -> list[Any]:
    clauses = [kind.model.merchant_id == merchant_id]
    if kind.only is not None:
        clauses.append(kind.only(merchant_id))
    return clauses


def count_rows(*, merchant_id: int, name: str) -> int:
    kind = KINDS[name]
    return int(
        db.session.scalar(select(func.count()).select_from(kind.model).where(*_where(kind, merchant_id))) or 0
    )


def rows(*, merchant_id: int, name: str) -> Iterator[list[Any]]:
    """Every row of the export, in id order, in batches of :data:`BATCH` (keyset on id)."""
    kind = KINDS[name]
    after = 0
    while True:
        batch = list(
            db.session.scalars(
                select(kind.model)
                .where(*_where(kind, merchant_id), kind.model.id > after)
                .order_by(kind.model.id)
                .limit(BATCH)
            )
        )
        for row in batch:
            yield [getter(row) for _, getter in kind.columns]
        if len(batch) < BATCH:
            return
        after = batch[-1].id
        db.session.expunge_all()  # one batch in memory at a time


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # never a formula in the merchant's spreadsheet
    return value


def write(
    name: str, fmt: str, source: Iterator[list[Any]], progress: Callable[[int], None] | None = None
) -> bytes:
    """The file: a header row, then ``source``'s rows (``progress`` is told the count every batch)."""
    headers = [header for header, _ in KINDS[name].columns]
    done = 0
    if fmt == "csv":
        text = io.StringIO()
        text.write("\ufeff")  # Excel opens UTF-8 CSV with Chinese text correctly only with a BOM
        out = csv.writer(text)
        out.writerow(headers)
        for row in source:
            out.writerow([_cell(v) for v in row])
            done += 1
            if progress and done % BATCH == 0:
                progress(done)
        return text.getvalue().encode("utf-8")
    book = Workbook(write_only=True)
    sheet = book.create_sheet(name)
    sheet.append(headers)
    for row in source:
        sheet.append([_cell(v) for v in row])
        done += 1
        if progress and done % BATCH == 0:
            progress(done)
    data = io.BytesIO()
    book.save(data)
    return data.getvalue()


def filename(merchant_slug: str, name: str, fmt: str) -> str:
    return f"{merchant_slug}-{name}-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"


# ---------------------------------------------------------------- long exports: jobs with progress


def _key(export_id: str) -> str:
    return f"{current_app.extensions['hongli.settings'].queue.prefix}:export:{export_id}"


def _index(merchant_id: int) -> str:
    return f"{current_app.extensions['hongli.settings'].queue.prefix}:exports:{merchant_id}"


def start_export(*, merchant_id: int, merchant_slug: str, name: str, fmt: str, actor: Actor) -> str:
    """Record the request (audited) and queue the job after commit; the export's id."""
    kind_of(name, fmt)
    export_id = secrets.token_hex(8)
    total = count_rows(merchant_id=merchant_id, name=name)
    redis = get_redis()
    state: dict[Any, Any] = {
        "merchant_id": merchant_id,
        "kind": name,
        "fmt": fmt,
        "status": "queued",
        "done": 0,
        "total": total,
        "filename": filename(merchant_slug, name, fmt),
        "created_at": int(time.time()),
    }
    pipe = redis.pipeline()
    pipe.hset(_key(export_id), mapping=state)
    pipe.expire(_key(export_id), KEEP_SECONDS)
    pipe.zadd(_index(merchant_id), {export_id: time.time()})
    pipe.expire(_index(merchant_id), KEEP_SECONDS)
    pipe.execute()
    record_audit(
        actor=actor,
        action="export.create",
        target_type="export",
        target_id=export_id,
        merchant_id=merchant_id,
        after={"kind": name, "format": fmt, "rows": total},
    )
    enqueue_after_commit(JOB, export_id, queue=QueueName.DEFAULT)
    return export_id


def _state(export_id: str) -> dict[str, str]:
    raw = get_redis().hgetall(_key(export_id))
    return {
        k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
        for k, v in raw.items()
    }


def export_state(*, merchant_id: int, export_id: str) -> dict[str, Any]:
    """One export of this merchant (another merchant's, or an expired one, is 404)."""
    if not export_id.isalnum() or len(export_id) > 32:
        raise NotFound("no such export")
    state = _state(export_id)
    if not state or int(state.get("merchant_id", 0)) != merchant_id:
        raise NotFound("no such export")
    total, done = int(state["total"]), int(state["done"])
    return {
        "id": export_id,
        "kind": state["kind"],
        "fmt": state["fmt"],
        "status": state["status"],
        "done": done,
        "total": total,
        "percent": 100 if state["status"] == "done" else (done * 100 // total if total else 0),
        "filename": state["filename"],
        "error": state.get("error"),
    }


def recent_exports(*, merchant_id: int, limit: int = 20) -> list[dict[str, Any]]:
    ids: list[Any] = list(get_redis().zrevrange(_index(merchant_id), 0, limit - 1))
    found = []
    for raw in ids:
        try:
            found.append(
                export_state(
                    merchant_id=merchant_id, export_id=raw.decode() if isinstance(raw, bytes) else str(raw)
                )
            )
        except NotFound:
            continue  # expired
    return found


def export_file(*, merchant_id: int, export_id: str) -> tuple[dict[str, Any], bytes]:
    state = export_state(merchant_id=merchant_id, export_id=export_id)
    data: Any = get_redis().get(_key(export_id) + ":file") if state["status"] == "done" else None
    if not isinstance(data, bytes):
        raise NotFound("the export is not ready")
    return state, data


def _progress(key: str, done: int) -> None:
    get_redis().hset(key, "done", done)


def build_export(export_id: str) -> str:
    """The job: write the file, telling its progress; idempotent (a finished export is left as it is)."""
    state = _state(export_id)
    if not state:
        return "expired"
    if state["status"] == "done":
        return "done"
    redis = get_redis()
    key = _key(export_id)
    redis.hset(key, mapping={"status": "running", "done": 0})
    try:
        data = write(
            state["kind"],
            state["fmt"],
            rows(merchant_id=int(state["merchant_id"]), name=state["kind"]),
            progress=lambda done: _progress(key, done),
        )
    except Exception as exc:
        redis.hset(key, mapping={"status": "failed", "error": type(exc).__name__})
        raise
    pipe = redis.pipeline()
    pipe.set(key + ":file", data, ex=KEEP_SECONDS)
    pipe.hset(key, mapping={"status": "done", "done": state["total"]})
    pipe.execute()
    return "done"


def refuse_long(total: int) -> None:
    if total > DIRECT_MAX_ROWS:
        raise InvalidInput(
            f"{total} rows: run it as a job (more than {DIRECT_MAX_ROWS})", details={"rows": total}
        )
