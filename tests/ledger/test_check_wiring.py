"""``create_app`` registers the cross-table checks of every domain, so ``flask ledger check`` runs them."""

from __future__ import annotations

from app.ledger.checks import registered_checks, unregister_check
from app.settings import Settings
from tests.conftest import AppFactory

CROSS_TABLE_CHECKS = {
    "rebates.red_packet_redeemed_once",
    "payouts.withdrawal_paid_at_most_once",
    "payouts.withdrawal_and_payout_agree",
    "payouts.ledger_follows_status",
    "limits.counters_match_rows",
}


def test_create_app_registers_the_cross_table_checks(settings: Settings, app_factory: AppFactory) -> None:
    for name in CROSS_TABLE_CHECKS:
        unregister_check(name)
    app_factory(settings)
    missing = CROSS_TABLE_CHECKS - set(registered_checks())
    assert not missing, (
        f"not run by `flask ledger check`: {sorted(missing)} — app._connect_domains must call "
        "app.payouts.checks.register() and app.limits.checks.register()"
    )
