"""Invite codes, the binding policy, and who an order is attributed to (inviter, two promoter levels).

Binding policy (``bind_invitation``), per merchant:

* a code of another merchant, or no code at all, is not found (404);
* no self-invite (422), and no binding that closes a loop with one's own invitee (422);
* first binding wins: a consumer is bound at most once, ever; a second bind is refused (409) and changes
  nothing, even after the first one expired;
* only new customers: a consumer with a paid order at this merchant cannot be bound (409);
* a binding attributes orders paid within ``BINDING_DAYS`` (30) of binding; after that it attributes
  nothing (neither the invite reward nor distribution), and the row stays as history.

Attribution of a paid order (``attribution_for``), evaluated when it is paid, as of its ``paid_at``:

* inviter (invite rule) = the buyer's live binding's inviter; the rule itself pays on the first paid
  order only;
* promoter level 1 = the buyer's inviter; level 2 = that inviter's own inviter (each through a live
  binding). Two levels exactly, never a third: the chain is read two links deep and no further;
* an order the shop registered with a ``promoter_code`` attributes level 1 to that code's owner (and
  level 2 to the owner's inviter) for this order, overriding the binding: the shop knows which promoter
  sold it. A code that is unknown or the buyer's own is ignored (the binding applies). The inviter of the
  invite rule always comes from the binding: a promoter link makes a sale, not a new customer's sponsor.
* nobody is ever their own promoter: a level that would be the buyer is left empty.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import qrcode
from flask import current_app
from qrcode.image.pure import PyPNGImage
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from app.core.db import utcnow
from app.core.errors import Conflict, InvalidInput, NotFound
from app.extensions import db
from app.invitations.models import InviteBinding, InviteCode
from app.orders.models import Order, OrderStatus

# Upper-case letters and digits without the look-alikes 0/O, 1/I/L: read aloud or typed without doubt.
CODE_ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH: Final = 8
BINDING_DAYS: Final = 30
SHARE_PAGE: Final = "/pages/index/index"  # the mini-program page that reads ``invite`` and calls bind
_CODE_ATTEMPTS: Final = 8


@dataclass(frozen=True)
class Invite:
    code: str
    share_path: str
    share_url: str
    qr_png_url: str


@dataclass(frozen=True)
class Attribution:
    """Who a paid order is attributed to; ``promoter_l2`` is only ever set with ``promoter_l1``."""

    inviter_id: int | None = None
    promoter_l1: int | None = None
    promoter_l2: int | None = None


def _public_base_url() -> str:
    return str(current_app.extensions["hongli.settings"].web.public_base_url).rstrip("/")


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str) -> str:
    """Codes are case-insensitive when typed or passed by a shop; stored upper-case."""
    return code.strip().upper()


def invite_code_of(*, merchant_id: int, consumer_id: int) -> InviteCode:
    """The consumer's invite code, created on first request (once, even under concurrent requests)."""
    query = select(InviteCode).where(
        InviteCode.merchant_id == merchant_id, InviteCode.consumer_id == consumer_id
    )
    found = db.session.scalar(query)
    if found is not None:
        return found
    for _ in range(_CODE_ATTEMPTS):
        row = InviteCode(merchant_id=merchant_id, consumer_id=consumer_id, code=_new_code())
        try:
            with db.session.begin_nested():
                db.session.add(row)
            return row
        except IntegrityError:
            # Either a parallel request created this consumer's code, or the random code is taken.
            found = db.session.scalar(query)
            if found is not None:
                return found
    raise RuntimeError("could not find a free invite code")  # 31^8 codes: practically unreachable


def invite_of(*, merchant_id: int, consumer_id: int) -> Invite:
    """The consumer's code with its mini-program path, H5 link and QR code image URL."""
    code = invite_code_of(merchant_id=merchant_id, consumer_id=consumer_id).code
    base = _public_base_url()
    return Invite(
        code=code,
        share_path=share_path(code),
        share_url=f"{base}/h5/?invite={code}",
        qr_png_url=f"{base}/api/mp/v1/me/invite/qr.png",
    )


def share_path(code: str) -> str:
    return f"{SHARE_PAGE}?invite={code}"


def invite_qr_png(*, merchant_id: int, consumer_id: int) -> bytes:
    """A PNG QR code of the consumer's share path (pure Python: qrcode's PyPNG writer, no Pillow)."""
    code = invite_code_of(merchant_id=merchant_id, consumer_id=consumer_id).code
    qr = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        box_size=8,
        border=4,
        image_factory=PyPNGImage,
    )
    qr.add_data(share_path(code))
    qr.make(fit=True)
    buffer = io.BytesIO()
    qr.make_image().save(buffer)
    return buffer.getvalue()


def bind_invitation(
    *, merchant_id: int, consumer_id: int, code: str, now: datetime | None = None
) -> InviteBinding:
    """Bind the consumer to the owner of ``code`` under the policy in this module's docstring."""
    now = now or utcnow()
    normalised = normalise_code(code)
    owner = db.session.scalar(
        select(InviteCode.consumer_id).where(
            InviteCode.merchant_id == merchant_id, InviteCode.code == normalised
        )
    )
    if owner is None:
        raise NotFound("no such invite code", details={"field": "code"})
    if owner == consumer_id:
        raise InvalidInput("you cannot use your own invite code", details={"reason": "self_invite"})
    if _bound(consumer_id):
        raise Conflict("you already accepted an invitation", details={"reason": "already_bound"})
    paid = db.session.scalar(
        select(
            exists().where(
                Order.merchant_id == merchant_id,
                Order.consumer_id == consumer_id,
                Order.status == OrderStatus.PAID,
            )
        )
    )
    if paid:
        raise Conflict("invitations are for new customers only", details={"reason": "existing_customer"})
    if db.session.scalar(
        select(exists().where(InviteBinding.invitee_id == owner, InviteBinding.inviter_id == consumer_id))
    ):
        raise InvalidInput("you invited the owner of this code", details={"reason": "circular"})
    binding = InviteBinding(
        merchant_id=merchant_id,
        invitee_id=consumer_id,
        inviter_id=owner,
        code=normalised,
        bound_at=now,
        expires_at=now + timedelta(days=BINDING_DAYS),
    )
    try:
        with db.session.begin_nested():
            db.session.add(binding)
    except IntegrityError:
        # A parallel bind of the same consumer got there first: first binding wins.
        raise Conflict("you already accepted an invitation", details={"reason": "already_bound"}) from None
    return binding


def _bound(consumer_id: int) -> bool:
    return bool(db.session.scalar(select(exists().where(InviteBinding.invitee_id == consumer_id))))


# Who invited ``consumer`` through a binding live at ``at``; the owner of an (already normalised) code.
InviterOf = Callable[[int, datetime], "int | None"]
OwnerOfCode = Callable[[str], "int | None"]


def attribute(
    *, buyer: int, promoter_code: str | None, at: datetime, inviter_of: InviterOf, owner_of_code: OwnerOfCode
) -> Attribution:
    """The attribution policy (this module's docstring) over two lookups: the live path reads the
    database, a replay its own batch of bindings and codes — one policy either way."""
    inviter = inviter_of(buyer, at)
    level1 = inviter
    if promoter_code:
        owner = owner_of_code(normalise_code(promoter_code))
        if owner is not None and owner != buyer:
            level1 = owner
    level2 = None
    if level1 is not None:
        level2 = inviter_of(level1, at)
        if level2 == buyer:
            level2 = None
    return Attribution(inviter_id=inviter, promoter_l1=level1, promoter_l2=level2)


def attribution_for(order: Order, *, at: datetime) -> Attribution:
    """Inviter and the two promoter levels of ``order`` paid at ``at`` (see this module's docstring)."""
    merchant_id = order.merchant_id

    def inviter_of(consumer_id: int, moment: datetime) -> int | None:
        return db.session.scalar(
            select(InviteBinding.inviter_id).where(
                InviteBinding.merchant_id == merchant_id,
                InviteBinding.invitee_id == consumer_id,
                InviteBinding.expires_at > moment,
            )
        )

    def owner_of_code(code: str) -> int | None:
        return db.session.scalar(
            select(InviteCode.consumer_id).where(
                InviteCode.merchant_id == merchant_id, InviteCode.code == code
            )
        )

    return attribute(
        buyer=order.consumer_id,
        promoter_code=order.promoter_code,
        at=at,
        inviter_of=inviter_of,
        owner_of_code=owner_of_code,
    )


@dataclass(frozen=True)
class AttributionBatch:
    """Bindings and codes of one merchant loaded at once, for attributing many past orders (a replay)."""

    bindings: dict[int, tuple[int, datetime]]  # invitee → (inviter, expires_at)
    codes: dict[str, int]  # code → owner

    def inviter_of(self, consumer_id: int, at: datetime) -> int | None:
        # As live: a binding that has not expired at ``at``. (Live, a binding made after the payment
        # cannot be seen yet; bound_at cannot stand in for that: WeChat's payment times are whole seconds,
        # so a binding made a moment before paying can carry a later bound_at.)
        binding = self.bindings.get(consumer_id)
        if binding is None or not at < binding[1]:
            return None
        return binding[0]

    def of(self, *, buyer: int, promoter_code: str | None, at: datetime) -> Attribution:
        return attribute(
            buyer=buyer,
            promoter_code=promoter_code,
            at=at,
            inviter_of=self.inviter_of,
            owner_of_code=self.codes.get,
        )


def attribution_batch(
    *, merchant_id: int, buyers: Iterable[int], promoter_codes: Iterable[str]
) -> AttributionBatch:
    """What :meth:`AttributionBatch.of` needs for orders of ``buyers`` (with these promoter codes):
    the buyers' bindings, the code owners, and the bindings of both one link up (level 2)."""
    codes: dict[str, int] = {}
    wanted_codes = {normalise_code(code) for code in promoter_codes if code}
    if wanted_codes:
        codes = dict(
            db.session.execute(
                select(InviteCode.code, InviteCode.consumer_id).where(
                    InviteCode.merchant_id == merchant_id, InviteCode.code.in_(sorted(wanted_codes))
                )
            )
            .tuples()
            .all()
        )

    def load(invitees: set[int]) -> dict[int, tuple[int, datetime]]:
        if not invitees:
            return {}
        rows = db.session.execute(
            select(InviteBinding.invitee_id, InviteBinding.inviter_id, InviteBinding.expires_at).where(
                InviteBinding.merchant_id == merchant_id, InviteBinding.invitee_id.in_(sorted(invitees))
            )
        ).tuples()
        return {invitee: (inviter, expires) for invitee, inviter, expires in rows}

    first = load(set(buyers))
    second = load({inviter for inviter, _ in first.values()} | set(codes.values()))
    return AttributionBatch(bindings=first | second, codes=codes)
