"""View guards. Each marks the view (``hongli_auth``) and authenticates before it runs.

* :func:`public` — no authentication (probes, login endpoints, WeChat callbacks that verify signatures).
* :func:`consumer_required` — ``Authorization: Bearer hc_…`` plus ``X-WX-AppId`` naming the merchant's app.
* :func:`staff_required` — console cookie, CSRF header on unsafe methods, ``X-Hongli-Merchant`` and a role.
* :func:`shop_key_required` — ``Authorization: Bearer hk_…`` (a merchant's shop API key).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request, session

from app.audit.service import Actor
from app.auth.principals import ConsumerPrincipal, Role, ShopPrincipal, StaffPrincipal
from app.core.errors import Forbidden, NotFound, Unauthenticated

AUTH_ATTR = "hongli_auth"
MERCHANT_HEADER = "X-Hongli-Merchant"
APPID_HEADER = "X-WX-AppId"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

F = TypeVar("F", bound=Callable[..., Any])


def _mark(view: F, kind: str) -> F:
    setattr(view, AUTH_ATTR, kind)
    return view


def public(view: F) -> F:
    """Open to anyone (the view must check whatever it needs, e.g. a WeChat signature)."""
    return _mark(view, "public")


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def consumer_required(view: F) -> F:
    """A logged-in consumer of the merchant whose app is named by ``X-WX-AppId``."""
    from app.consumers.sessions import authenticate_consumer

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = bearer_token()
        appid = request.headers.get(APPID_HEADER, "")
        if not token or not appid:
            raise Unauthenticated(f"a consumer token and the {APPID_HEADER} header are required")
        principal = authenticate_consumer(token=token, appid=appid)
        g.principal = principal
        g.merchant_id = principal.merchant_id
        return view(*args, **kwargs)

    return _mark(cast(F, wrapper), "consumer")


def staff_required(
    *roles: Role, merchant_scoped: bool = True, while_suspended: bool = False
) -> Callable[[F], F]:
    """A console session; with ``merchant_scoped``, a role in ``roles`` at the ``X-Hongli-Merchant`` merchant.

    No ``roles`` means any role. Unsafe methods also need the session's CSRF token in ``X-CSRF-Token``,
    and are refused for a suspended merchant unless ``while_suspended`` (winding down what is already in
    motion — payouts, withdrawals, pausing campaigns, banning — and computations that change nothing).
    """

    def decorate(view: F) -> F:
        from app.staff.sessions import authenticate_staff

        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = authenticate_staff()
            if request.method not in SAFE_METHODS:
                expected = session.get("csrf", "")
                supplied = request.headers.get(CSRF_HEADER, "")
                # As bytes: compare_digest raises on a non-ASCII str (headers arrive latin-1 decoded).
                if not expected or not hmac.compare_digest(str(expected).encode(), supplied.encode()):
                    raise Forbidden("missing or wrong CSRF token", details={"header": CSRF_HEADER})
            g.principal = principal
            if merchant_scoped:
                g.merchant_id = _staff_merchant(principal, roles, while_suspended=while_suspended)
            return view(*args, **kwargs)

        return _mark(cast(F, wrapper), "staff")

    return decorate


def _staff_merchant(principal: StaffPrincipal, roles: tuple[Role, ...], *, while_suspended: bool) -> int:
    from app.merchants.models import MerchantStatus
    from app.merchants.service import get_merchant

    slug = request.headers.get(MERCHANT_HEADER, "")
    if not slug:
        raise Forbidden(
            f"the {MERCHANT_HEADER} header must name the merchant", details={"header": MERCHANT_HEADER}
        )
    try:
        merchant = get_merchant(slug)
    except NotFound:
        merchant = None
    role = principal.role_at(merchant.id) if merchant is not None else None
    if merchant is None or role is None:
        # Same answer for "no such merchant" and "not yours": merchants are not enumerable.
        raise Forbidden("no access to this merchant")
    if roles and role not in roles and role is not Role.OWNER:
        raise Forbidden(f"this action needs the role {' or '.join(r.value for r in roles)}")
    suspended = merchant.status is not MerchantStatus.ACTIVE
    g.merchant_suspended = suspended
    if suspended and request.method not in SAFE_METHODS and not while_suspended:
        raise Forbidden(
            "this merchant is suspended: only winding-down actions are allowed",
            details={"merchant_status": "suspended"},
        )
    return merchant.id


def shop_key_required(view: F) -> F:
    """A merchant's shop system, by API key."""
    from app.shop_keys.service import authenticate_shop_key

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = bearer_token()
        if not token:
            raise Unauthenticated("a shop API key is required (Authorization: Bearer hk_…)")
        principal = authenticate_shop_key(token)
        g.principal = principal
        g.merchant_id = principal.merchant_id
        return view(*args, **kwargs)

    return _mark(cast(F, wrapper), "shop")


def merchant_is_suspended() -> bool:
    """Whether the merchant the console is acting for (``X-Hongli-Merchant``) is suspended."""
    return bool(g.get("merchant_suspended", False))


def current_merchant_id() -> int:
    merchant_id: int = g.merchant_id
    return merchant_id


def current_consumer() -> ConsumerPrincipal:
    principal = g.principal
    assert isinstance(principal, ConsumerPrincipal)
    return principal


def current_staff() -> StaffPrincipal:
    principal = g.principal
    assert isinstance(principal, StaffPrincipal)
    return principal


def current_actor() -> Actor:
    """The signed-in staff member, as the audit log names them."""
    return Actor("staff", str(current_staff().staff_id))


def current_shop() -> ShopPrincipal:
    principal = g.principal
    assert isinstance(principal, ShopPrincipal)
    return principal
