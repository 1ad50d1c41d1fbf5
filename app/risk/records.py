"""Writing a decision: its row, the identifiers it saw first (links) and, for a held reward, the order's
hold — ONE statement on PostgreSQL (data-modifying CTEs: the decision's id goes to the hold inside the
statement, the links come back with whether another consumer already has them), two or three on SQLite.

A claim whose own write is one statement (a pool grab) writes its decision and links inside that
statement instead (:func:`claim_sql`): no round trip of its own.

Text statements built once per shape (links 0…n, hold or not): SQLAlchemy's ON CONFLICT constructs have no
cache key, and the ORM's unit of work costs more than the row (see app.core.db.insert_unless_exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from rq import Retry
from sqlalchemy import BindParameter, Table, TextClause, bindparam, text

from app.core.db import insert_unless_exists
from app.extensions import db
from app.risk.links import insert_links, merge
from app.risk.models import HoldStatus, LinkKind, RiskDecision, RiskHold, RiskLink

_decisions = cast(Table, RiskDecision.__table__)
_holds = cast(Table, RiskHold.__table__)
_links = cast(Table, RiskLink.__table__)

DECISION_COLUMNS = (
    "merchant_id",
    "consumer_id",
    "action",
    "kind",
    "reference",
    "outcome",
    "reasons",
    "scores",
    "ip",
    "device",
    "facts",
    "policy_version",
    "created_at",
)
_HOLD_COLUMNS = (
    "merchant_id",
    "consumer_id",
    "order_id",
    "decision_id",
    "reasons",
    "status",
    "reversed_fen",
    "created_at",
)

_INSERT_DECISION = text(
    f"INSERT INTO risk_decisions ({', '.join(DECISION_COLUMNS)}) "  # noqa: S608 (the model's own names)
    f"VALUES ({', '.join(':' + c for c in DECISION_COLUMNS)}) RETURNING id"
).bindparams(*(bindparam(c, type_=_decisions.c[c].type) for c in DECISION_COLUMNS))
_INSERT_HOLD = insert_unless_exists(_holds, _HOLD_COLUMNS, key=("merchant_id", "order_id"))
_COMBINED: dict[tuple[int, bool], TextClause] = {}
MERGE_RETRY = Retry(max=3, interval=[2, 10, 30])


def write_decision(
    row: dict[str, Any],
    *,
    links: list[tuple[LinkKind, str]],
    hold_order_id: int | None,
    seen_shared: list[tuple[LinkKind, str]] | None = None,
) -> int:
    """Insert the decision ``row`` (every column of :data:`DECISION_COLUMNS`), the consumer's new
    ``links`` (merging the groups they join) and, with ``hold_order_id``, the order's hold (an order
    already held stays held by its first decision). The decision's id."""
    merchant_id, consumer_id, at = row["merchant_id"], row["consumer_id"], row["created_at"]
    if db.session.get_bind().dialect.name == "postgresql":
        params = dict(row)
        for i, (kind, digest) in enumerate(links):
            params[f"kind_{i}"], params[f"digest_{i}"] = kind, digest
        if hold_order_id is not None:
            params |= {"order_id": hold_order_id, "status": HoldStatus.HELD}
        written, pairs = db.session.execute(_combined(len(links), hold_order_id is not None), params).one()
        decision_id = int(written)
        shared = [_pair(pair) for pair in pairs or []]
    else:
        decision_id = int(db.session.execute(_INSERT_DECISION, row).scalar_one())
        if hold_order_id is not None:
            db.session.execute(
                _INSERT_HOLD,
                {
                    "merchant_id": merchant_id,
                    "consumer_id": consumer_id,
                    "order_id": hold_order_id,
                    "decision_id": decision_id,
                    "reasons": row["reasons"],
                    "status": HoldStatus.HELD,
                    "reversed_fen": 0,
                    "created_at": at,
                },
            )
        shared = insert_links(merchant_id=merchant_id, consumer_id=consumer_id, pairs=links, now=at)
    for kind, digest in shared:
        merge(merchant_id, consumer_id, kind, digest, at)
    merge_later(row, seen_shared or [], found=shared)
    return decision_id


def merge_later(
    row: dict[str, Any], seen_shared: list[tuple[LinkKind, str]], *, found: list[tuple[LinkKind, str]]
) -> None:
    """Identifiers Redis saw with another consumer (``seen_shared``) whose link the decision's statement
    did not find (not in ``found``): that consumer's claim was committing at the same moment (two new
    accounts on one phone at once). Merged by a job once both are committed (``jobs.risk.merge_seen``,
    retried while the other link is not there)."""
    from app.queue.after_commit import enqueue_after_commit

    for kind, digest in (pair for pair in seen_shared if pair not in found):
        enqueue_after_commit(
            "jobs.risk.merge_seen",
            row["merchant_id"],
            row["consumer_id"],
            kind.value,
            digest,
            retry=MERGE_RETRY,
        )


def _combined(links: int, hold: bool) -> TextClause:
    """``WITH d AS (INSERT decision RETURNING id)[, h AS (INSERT hold … FROM d)][, l AS (INSERT links)]
    SELECT d.id, <the links someone else has too> FROM d``. The final SELECT sees the tables as they were
    before the statement: "someone else" is committed data (or this transaction's), never the rows
    inserted here."""
    statement = _COMBINED.get((links, hold))
    if statement is not None:
        return statement
    # Only the model's own column names are formatted in; every value is a bound parameter.
    names, values = ", ".join(DECISION_COLUMNS), ", ".join(":" + c for c in DECISION_COLUMNS)
    parts = [f"d AS (INSERT INTO risk_decisions ({names}) VALUES ({values}) RETURNING id)"]  # noqa: S608
    params = [bindparam(c, type_=_decisions.c[c].type) for c in DECISION_COLUMNS]
    if hold:
        chosen = ":merchant_id, :consumer_id, :order_id, d.id, :reasons, :status, 0, :created_at"
        conflict = "ON CONFLICT (merchant_id, order_id) DO NOTHING"
        parts.append(
            f"h AS (INSERT INTO risk_holds ({', '.join(_HOLD_COLUMNS)}) SELECT {chosen} FROM d {conflict})"  # noqa: S608
        )
        params += [
            bindparam("order_id", type_=_holds.c.order_id.type),
            bindparam("status", type_=_holds.c.status.type),
        ]
    if links:
        rows = ", ".join(
            f"(:merchant_id, :kind_{i}, :digest_{i}, :consumer_id, :created_at)" for i in range(links)
        )
        conflict = "ON CONFLICT (merchant_id, kind, digest, consumer_id) DO NOTHING"
        columns = "merchant_id, kind, digest, consumer_id, created_at"
        parts.append(
            f"l AS (INSERT INTO risk_links ({columns}) VALUES {rows} {conflict} RETURNING kind, digest)"  # noqa: S608
        )
        for i in range(links):
            params += [
                bindparam(f"kind_{i}", type_=_links.c.kind.type),
                bindparam(f"digest_{i}", type_=_links.c.digest.type),
            ]
        select = f"SELECT d.id, {_shared_links(links, decision='', link='')} FROM d"  # noqa: S608
    else:
        select = "SELECT d.id, NULL FROM d"
    statement = _COMBINED[(links, hold)] = text(f"WITH {', '.join(parts)} {select}").bindparams(*params)
    return statement


# ---------------------------------------------------------------- a decision inside the claim's statement


@dataclass(frozen=True)
class ClaimSql:
    """The parts a claim's own statement adds to write its (allowed) decision and links: CTEs to append to
    its ``WITH``, the two result columns (the decision's id; the ``kind|digest`` of each link another
    consumer has too) and the join that yields them, with their bind parameters (prefixed ``rd_`` /
    ``rl_``: no clash with the claim's own)."""

    ctes: str
    columns: str
    join: str
    params: tuple[BindParameter[Any], ...]


_CLAIM_SQL: dict[tuple[int, str], ClaimSql] = {}


def claim_sql(links: int, source: str) -> ClaimSql:
    """The decision (and ``links`` new links) written once per row of the CTE ``source`` — the claim's
    own inserted row: no claim written, no decision written (it rolls back with the claim anyway). The
    shared-links column reads committed rows (and this transaction's), never the ones inserted here:
    the links another consumer has too (one the consumer had already, should Redis have forgotten it,
    is merged again: a merge is idempotent)."""
    found = _CLAIM_SQL.get((links, source))
    if found is not None:
        return found
    if not source.isidentifier():
        raise ValueError(f"not a CTE name: {source!r}")
    names = ", ".join(DECISION_COLUMNS)
    values = ", ".join(":rd_" + c for c in DECISION_COLUMNS)
    ctes = [f"rd AS (INSERT INTO risk_decisions ({names}) SELECT {values} FROM {source} RETURNING id)"]  # noqa: S608
    params = [bindparam("rd_" + c, type_=_decisions.c[c].type) for c in DECISION_COLUMNS]
    shared = "NULL"
    if links:
        rows = ", ".join(f"(:rl_kind_{i}, :rl_digest_{i})" for i in range(links))
        insert_links = (
            "rl AS (INSERT INTO risk_links (merchant_id, kind, digest, consumer_id, created_at) "  # noqa: S608
            f"SELECT :rd_merchant_id, v.kind, v.digest, :rd_consumer_id, :rd_created_at FROM {source}, "
            f"(VALUES {rows}) AS v (kind, digest) "
            "ON CONFLICT (merchant_id, kind, digest, consumer_id) DO NOTHING RETURNING kind, digest)"
        )
        ctes.append(insert_links)
        for i in range(links):
            params += [
                bindparam(f"rl_kind_{i}", type_=_links.c.kind.type),
                bindparam(f"rl_digest_{i}", type_=_links.c.digest.type),
            ]
        shared = _shared_links(links, decision="rd_", link="rl_")
    found = _CLAIM_SQL[(links, source)] = ClaimSql(
        ctes=", ".join(ctes), columns=f"rd.id, {shared}", join="JOIN rd ON true", params=tuple(params)
    )
    return found


def claim_params(row: dict[str, Any], links: list[tuple[LinkKind, str]]) -> dict[str, Any]:
    """The values of :func:`claim_sql`'s parameters for the decision ``row`` and its new ``links``."""
    params = {"rd_" + c: row[c] for c in DECISION_COLUMNS}
    for i, (kind, digest) in enumerate(links):
        params[f"rl_kind_{i}"], params[f"rl_digest_{i}"] = kind, digest
    return params


def claim_links(
    row: dict[str, Any], shared: list[str] | None, seen_shared: list[tuple[LinkKind, str]]
) -> list[tuple[LinkKind, str]]:
    """What the claim's statement said (its shared-links column): the links another consumer has too —
    their groups to merge, returned — and, queued for after the commit, a merge of each link Redis saw
    with another consumer whose link the statement did not find yet (:func:`merge_later`)."""
    pairs = [_pair(pair) for pair in shared or []]
    merge_later(row, seen_shared, found=pairs)
    return pairs


def claim_written(row: dict[str, Any], shared: list[tuple[LinkKind, str]]) -> None:
    """After the claim's statement: merge the groups of the links another consumer has too."""
    for kind, digest in shared:
        merge(row["merchant_id"], row["consumer_id"], kind, digest, row["created_at"])


def _shared_links(links: int, *, decision: str, link: str) -> str:
    """An expression: the ``kind|digest`` of each of ``links`` new links (parameters ``<link>kind_<i>``,
    ``<link>digest_<i>``) another consumer than ``<decision>consumer_id`` already has. One index lookup
    per link, its unique key's three leading columns bound: an EXISTS correlated with the inserted rows
    instead is planned as a scan of every link of the merchant, once per statement."""
    return "array_remove(ARRAY[{}], NULL)".format(
        ", ".join(
            f"CASE WHEN EXISTS (SELECT 1 FROM risk_links o WHERE o.merchant_id = :{decision}merchant_id "  # noqa: S608
            f"AND o.kind = :{link}kind_{i} AND o.digest = :{link}digest_{i} "
            f"AND o.consumer_id <> :{decision}consumer_id) THEN :{link}kind_{i} || '|' || :{link}digest_{i} END"
            for i in range(links)
        )
    )


def _pair(shared: str) -> tuple[LinkKind, str]:
    kind, digest = shared.split("|", 1)
    return LinkKind(kind), digest
