"""The console pages' guard: the staff session of the JSON API, the merchant from the URL, a role, CSRF.

A page refuses exactly what its JSON endpoint refuses. A browser that is not signed in is sent to the
login page; any other caller (no ``Accept: text/html``) gets the API's 401 envelope, so
``tests/test_authorization.py`` holds for pages too. Forms carry the session's CSRF token in a hidden
``csrf_token`` field (or ``X-CSRF-Token``), compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import quote

from flask import g, redirect, request, session, url_for

from app.auth.guards import AUTH_ATTR, CSRF_HEADER, SAFE_METHODS
from app.auth.principals import Role, StaffPrincipal
from app.core.errors import Forbidden, NotFound, Unauthenticated
from app.merchants.models import Merchant, MerchantStatus

F = TypeVar("F", bound=Callable[..., Any])
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class PageContext:
    """Who is looking, at which merchant, with which role."""

    principal: StaffPrincipal
    merchant: Merchant
    role: Role

    def may(self, *roles: Role) -> bool:
        """Whether the role is one of ``roles`` (the owner may do everything; no roles = any role)."""
        return not roles or self.role is Role.OWNER or self.role in roles

    @property
    def suspended(self) -> bool:
        return self.merchant.status is not MerchantStatus.ACTIVE


def wants_html() -> bool:
    accept = request.accept_mimetypes
    return bool(accept) and accept.accept_html


def check_csrf() -> None:
    """An unsafe request must carry the session's token (form field or header)."""
    if request.method in SAFE_METHODS:
        return
    expected = str(session.get("csrf", ""))
    supplied = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(expected.encode(), supplied.encode()):
        raise Forbidden("missing or wrong CSRF token", details={"field": CSRF_FIELD})


def signed_in() -> StaffPrincipal:
    from app.staff.sessions import authenticate_staff

    return authenticate_staff()


def page(*roles: Role, while_suspended: bool = False) -> Callable[[F], F]:
    """A console page of the merchant named by the URL's ``slug``, for ``roles`` (none = any role).

    Unsafe methods need the CSRF token and, at a suspended merchant, ``while_suspended`` (as the API).
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                principal = signed_in()
            except Unauthenticated:
                if wants_html() and request.method in SAFE_METHODS:
                    return redirect(url_for("console_pages.login", next=quote(request.full_path)), 303)
                raise
            check_csrf()
            g.principal = principal
            merchant = _merchant(kwargs.get("slug", ""))
            role = principal.role_at(merchant.id) if merchant is not None else None
            if merchant is None or role is None:
                raise Forbidden("no access to this merchant")
            ctx = PageContext(principal, merchant, role)
            if not ctx.may(*roles):
                raise Forbidden(f"this needs the role {' or '.join(r.value for r in roles)}")
            if ctx.suspended and request.method not in SAFE_METHODS and not while_suspended:
                raise Forbidden(
                    "this merchant is suspended: only winding-down actions are allowed",
                    details={"merchant_status": "suspended"},
                )
            g.merchant_id = merchant.id
            g.merchant_suspended = ctx.suspended
            g.page = ctx
            return view(*args, **kwargs)

        return cast(F, _mark(wrapper, "staff"))

    return decorate


def any_staff(view: F) -> F:
    """A page of a signed-in staff member, not of one merchant (the merchant switcher, logout)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            principal = signed_in()
        except Unauthenticated:
            if wants_html() and request.method in SAFE_METHODS:
                return redirect(url_for("console_pages.login"), 303)
            raise
        check_csrf()
        g.principal = principal
        return view(*args, **kwargs)

    return cast(F, _mark(wrapper, "staff"))


def _mark(view: Callable[..., Any], kind: str) -> Callable[..., Any]:
    setattr(view, AUTH_ATTR, kind)
    return view


def _merchant(slug: str) -> Merchant | None:
    from app.merchants.service import get_merchant

    try:
        return get_merchant(slug)
    except NotFound:
        return None


def current_page() -> PageContext:
    ctx = g.page
    assert isinstance(ctx, PageContext)
    return ctx
