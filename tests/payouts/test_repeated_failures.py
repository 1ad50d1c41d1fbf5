"""Reading a payout's history into passes: what counts as the same failure pass after pass (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.payouts.models import Payout, PayoutStatus
from app.payouts.operations import NO_OUTCOME, pass_failures, repeated_failure
from app.payouts.service import RATE_LIMITED

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _pass(action: str = "resolve") -> dict[str, Any]:
    return {"event": f"pass:{action}"}


def _wechat(kind: str, code: str | None = None, state: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"event": f"wechat:{kind}", "code": code, "state": state, **extra}


def _payout(history: list[dict[str, Any]], *, leased: bool = False) -> Payout:
    return Payout(
        id=1,
        bill_no="HLP0000000001",
        status=PayoutStatus.SUBMITTING,
        history=history,
        claimed_until=NOW + timedelta(minutes=5) if leased else None,
    )


def test_each_pass_is_its_outcome_code_state_or_kind() -> None:
    history = [
        {"event": "created"},
        _pass("submit"),
        _wechat("unknown", code="SYSTEM_ERROR"),
        _pass(),
        _wechat("unknown", state="WEIRD"),
        _pass(),
        _wechat("retry"),
        _pass(),
        _wechat("accepted", state="WAIT_USER_CONFIRM"),
    ]
    assert pass_failures(history) == ["SYSTEM_ERROR", "WEIRD", "RETRY", None]


def test_operators_and_our_own_rate_limit_are_not_failed_passes() -> None:
    history = [
        _pass("submit"),
        _wechat("retry", code="NOT_ENOUGH"),
        _wechat("unknown", code="SYSTEM_ERROR", by="operator"),  # resolve_payout's query
        {"event": "operator:retry", "actor": 3},
        _pass(),
        _wechat("retry", code=RATE_LIMITED),
        _pass(),
        _wechat("retry", code="NOT_ENOUGH"),
        _pass(),
        _wechat("retry", code="NOT_ENOUGH"),
    ]
    assert pass_failures(history) == ["NOT_ENOUGH", "NOT_ENOUGH", "NOT_ENOUGH"]
    found = repeated_failure(_payout(history), now=NOW)
    assert found is not None and (found.code, found.passes) == ("NOT_ENOUGH", 3)


def test_a_pass_that_left_no_outcome_counts_unless_it_is_running() -> None:
    history = [_pass("submit"), _pass(), _pass()]
    assert pass_failures(history) == [NO_OUTCOME, NO_OUTCOME, NO_OUTCOME]
    assert pass_failures(history, running=True) == [NO_OUTCOME, NO_OUTCOME]
    found = repeated_failure(_payout(history), now=NOW)
    assert found is not None and (found.code, found.passes) == (NO_OUTCOME, 3)
    assert repeated_failure(_payout(history, leased=True), now=NOW) is None


def test_a_refused_pass_counts_with_its_code() -> None:
    history = [{"event": "pass:refused", "code": "insufficient_funds"} for _ in range(3)]
    found = repeated_failure(_payout(history), now=NOW)
    assert found is not None and (found.code, found.passes) == ("insufficient_funds", 3)


def test_only_the_latest_run_of_one_code_counts() -> None:
    mixed = [_pass(), _wechat("unknown", code="A"), _pass(), _wechat("unknown", code="A")]
    mixed += [_pass(), _wechat("unknown", code="B"), _pass(), _wechat("unknown", code="B")]
    assert repeated_failure(_payout(mixed), now=NOW) is None
    progress = [_pass(), _wechat("unknown", code="A")] * 3 + [
        _pass("poll"),
        _wechat("accepted", state="SENT"),
    ]
    assert repeated_failure(_payout(progress), now=NOW) is None
    found = repeated_failure(_payout([_pass(), _wechat("unknown", code="A")] * 4), 4, now=NOW)
    assert found is not None and found.passes == 4
