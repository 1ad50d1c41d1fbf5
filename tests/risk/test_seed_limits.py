"""Seed 000's numbers through HTTP: per IP at most 5 claims a day, at least 10 minutes apart."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.coupons.models import Coupon
from app.risk.models import Outcome, RiskDecision
from tests.coupons.conftest import Marketing, marketing
from tests.risk.conftest import Person, advance, device_token, enforce, person

__all__ = ["marketing"]
FARM_IP = "203.0.113.7"


def _claim(who: Person, order_id: int, **kwargs: Any) -> Any:
    return who.post(f"/api/mp/v1/orders/{order_id}/coupon", **kwargs)


def _coupons(db_session: Session) -> int:
    return int(db_session.scalar(select(func.count(Coupon.id))) or 0)


def test_the_sixth_claim_from_one_ip_in_a_day_and_a_second_within_ten_minutes_are_refused(
    marketing: Marketing, clock: Any, db_session: Session
) -> None:
    marketing.stock()
    shop = marketing.shop
    # Only seed 000's two numbers here: the signal on many new accounts behind one IP is turned off.
    off = {"policy": {"enforce": True, "new_accounts_per_ip_per_day": 0}}
    assert marketing.console.patch("/api/console/v1/risk/policy", json=off).status_code == 200
    people = [person(shop, f"user{i}", ip=FARM_IP, device=device_token(shop.client)) for i in range(7)]
    orders = [p.order(f"SEED-{i}", 5000) for i, p in enumerate(people)]

    assert _claim(people[0], orders[0]).status_code == 201
    # A second claim from the same IP a moment later: refused with its reason, and nothing issued.
    too_soon = _claim(people[1], orders[1])
    assert too_soon.status_code == 429, too_soon.json
    assert too_soon.json["error"]["code"] == "risk_limited"
    assert too_soon.json["error"]["details"]["reasons"] == ["ip_min_interval"]
    assert 0 < int(too_soon.headers["Retry-After"]) <= 600
    assert _coupons(db_session) == 1

    # Four more, each 10 minutes after the last: five claims from this IP today.
    for i in range(1, 5):
        advance(clock, 601)
        answer = _claim(people[i], orders[i])
        assert answer.status_code == 201, answer.json
    advance(clock, 601)
    sixth = _claim(people[5], orders[5])
    assert sixth.status_code == 429, sixth.json
    assert sixth.json["error"]["details"]["reasons"] == ["ip_daily_limit"]
    assert _coupons(db_session) == 5

    # The same person from another IP is not this IP's sixth claim.
    elsewhere = Person(people[5].shop, "198.51.100.20", people[5].device)
    assert _claim(elsewhere, orders[5]).status_code == 201
    refused = db_session.scalars(
        select(RiskDecision.reasons).where(RiskDecision.outcome == Outcome.LIMIT).order_by(RiskDecision.id)
    ).all()
    assert refused == [["ip_min_interval"], ["ip_daily_limit"]]


def test_a_spoofed_forwarded_for_does_not_change_the_ip(
    marketing: Marketing, clock: Any, db_session: Session
) -> None:
    # No proxy is trusted in the tests' settings: X-Forwarded-For is the client's own word, ignored.
    enforce(marketing.shop.merchant.id)
    marketing.stock()
    shop = marketing.shop
    first, second = (person(shop, f"spoof{i}", ip=FARM_IP, device=None) for i in range(2))
    orders = [first.order("SPOOF-1", 5000), second.order("SPOOF-2", 5000)]
    assert _claim(first, orders[0]).status_code == 201
    spoofed = _claim(second, orders[1], headers={"X-Forwarded-For": "192.0.2.99"})
    assert spoofed.status_code == 429
    assert spoofed.json["error"]["details"]["reasons"] == ["ip_min_interval"]
    ips = db_session.scalars(select(RiskDecision.ip).order_by(RiskDecision.id)).all()
    assert ips == [FARM_IP, FARM_IP]


def test_a_forged_device_token_counts_as_no_device(
    marketing: Marketing, clock: Any, db_session: Session
) -> None:
    marketing.stock()
    shop = marketing.shop
    owner = marketing.console
    assert (
        owner.patch(
            "/api/console/v1/risk/policy", json={"policy": {"enforce": True, "require_device": True}}
        ).status_code
        == 200
    )
    good = device_token(shop.client)
    forged = good[:-1] + ("0" if good[-1] != "0" else "1")
    honest = person(shop, "honest", ip="198.51.100.1", device=good)
    forger = person(shop, "forger", ip="198.51.100.2", device=forged)
    orders = [honest.order("DEV-1", 5000), forger.order("DEV-2", 5000)]
    assert _claim(honest, orders[0]).status_code == 201
    refused = _claim(forger, orders[1])
    assert refused.status_code == 429
    assert refused.json["error"]["details"]["reasons"] == ["device_forged"]
    assert _coupons(db_session) == 1


def test_a_new_merchant_observes_records_and_refuses_nothing(
    marketing: Marketing, clock: Any, db_session: Session
) -> None:
    marketing.stock()
    shop = marketing.shop
    first, second = (person(shop, f"calm{i}", ip=FARM_IP, device=None) for i in range(2))
    orders = [first.order("CALM-1", 5000), second.order("CALM-2", 5000)]
    assert _claim(first, orders[0]).status_code == 201
    assert _claim(second, orders[1]).status_code == 201  # 10 minutes not passed: only observed
    recorded = db_session.scalars(select(RiskDecision).order_by(RiskDecision.id)).all()
    assert [(d.outcome, d.reasons, d.facts["enforced"]) for d in recorded] == [
        (Outcome.ALLOW, [], False),
        (Outcome.LIMIT, ["ip_min_interval"], False),
    ]
    # What enforcing would have done, replayed: one claim of two refused.
    dry = marketing.console.post(
        "/api/console/v1/risk/dry-run", json={"policy": {"enforce": True}, "days": 1}
    )
    assert dry.status_code == 200, dry.json
    assert (dry.json["decisions"], dry.json["would_be"]["limit"], dry.json["reasons"]) == (
        2,
        1,
        {"ip_min_interval": 1},
    )
    # And without the minimum interval, none.
    relaxed = {"policy": {"ip_min_interval_seconds": 0}, "days": 1}
    dry = marketing.console.post("/api/console/v1/risk/dry-run", json=relaxed)
    assert (dry.json["would_be"]["limit"], dry.json["changed"]) == (0, 1)
