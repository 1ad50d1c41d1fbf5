"""The sandbox shop of the payment tests, with an owner signed in to the console at its merchant."""

from __future__ import annotations

import pytest
from flask import Flask

from app.auth.principals import Role
from tests.console_client import Console
from tests.factories import make_staff
from tests.payments.conftest import Shop, shop

__all__ = ["shop"]


@pytest.fixture
def owner(shop: Shop, app: Flask) -> Console:
    """The merchant's owner, signed in to the console (a client of its own: the session is a cookie)."""
    staff = make_staff(merchant=shop.merchant, role=Role.OWNER)
    return Console(app.test_client(), shop.merchant.slug).login(staff.email)
