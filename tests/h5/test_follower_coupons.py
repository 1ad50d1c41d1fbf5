"""A follower's page lists the vouchers in their card pack (those WeChat confirmed), not one still
reserved or refused."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.coupons.conftest import Marketing, marketing, run_jobs, shop
from tests.h5.test_follower_pages import _sign_in

__all__ = ["marketing", "shop"]


def test_the_voucher_a_follow_earned_is_on_the_followers_page(
    marketing: Marketing, app: Flask, client: FlaskClient, db_session: Session
) -> None:
    shop = marketing.shop
    marketing.stock(name="关注礼 ¥10")
    shop.sandbox.post("/users/alice/follow", {"appid": shop.merchant.oa_appid})
    assert run_jobs("jobs.followers.welcome") == 1
    _sign_in(client, shop.sandbox, shop.merchant, "alice")

    reserved = client.get(f"/h5/m/{shop.merchant.slug}/").get_data(as_text=True)
    assert "还没有优惠券" in reserved  # reserved, not yet confirmed by WeChat: not in the card pack
    assert run_jobs("jobs.coupons.send_coupon") == 1
    page = client.get(f"/h5/m/{shop.merchant.slug}/").get_data(as_text=True)

    assert "<strong>¥10.00</strong>" in page and "满 ¥50.00 可用" in page and "在微信卡包中" in page
