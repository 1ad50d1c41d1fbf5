"""Payout rails: v3 transfer bills (§6.1), v2 cash red packets (§5) and v2 transfers (§6.3).

Money leaves ``Merchant.balance_fen`` when a payout is accepted and comes back on FAIL / CANCELLED / REFUND,
so NOT_ENOUGH / NOTENOUGH happen naturally and a top-up fixes them.
"""

from __future__ import annotations

import itertools
from typing import Any

from wechat.sandbox.clock import cst_format, rfc3339
from wechat.sandbox.state import Merchant, RedPacket, TransferBill, move
from wechat.sandbox.world import World

# ------------------------------------------------------------------ v3 transfer bills


def render_transfer_bill(bill: TransferBill, *, created: bool = False) -> dict[str, Any]:
    """Create reply (``created``) or query reply (§6.1)."""
    if created:
        out: dict[str, Any] = {
            "out_bill_no": bill.out_bill_no,
            "transfer_bill_no": bill.transfer_bill_no,
            "create_time": rfc3339(bill.created_at),
            "state": bill.state,
        }
        if bill.state == "WAIT_USER_CONFIRM":
            out["package_info"] = bill.package_info
        if bill.fail_reason:
            out["fail_reason"] = bill.fail_reason
        return out
    out = {
        "mch_id": bill.mchid,
        "out_bill_no": bill.out_bill_no,
        "transfer_bill_no": bill.transfer_bill_no,
        "appid": bill.appid,
        "state": bill.state,
        "transfer_amount": bill.amount,
        "transfer_remark": bill.remark,
        "openid": bill.openid,
        "create_time": rfc3339(bill.created_at),
        "update_time": rfc3339(bill.updated_at),
    }
    if bill.fail_reason:
        out["fail_reason"] = bill.fail_reason
    return out


def _bill_finished(world: World, bill: TransferBill) -> None:
    merchant = world.state.merchants[bill.mchid]
    if bill.state in ("FAIL", "CANCELLED"):
        merchant.balance_fen += bill.amount
    resource = {
        "out_bill_no": bill.out_bill_no,
        "transfer_bill_no": bill.transfer_bill_no,
        "state": bill.state,
        "mch_id": bill.mchid,
        "transfer_amount": bill.amount,
        "openid": bill.openid,
        "create_time": rfc3339(bill.created_at),
        "update_time": rfc3339(bill.updated_at),
    }
    if bill.fail_reason:
        resource["fail_reason"] = bill.fail_reason
    world.notifier.v3(
        merchant,
        bill.notify_url,
        event_type="MCHTRANSFER.BILL.FINISHED",
        summary="商家转账单据终态通知",
        original_type="mch_payment",
        associated_data="mch_payment",
        resource=resource,
    )


def set_bill_state(world: World, bill: TransferBill, state: str, fail_reason: str = "") -> None:
    """Transition a bill; terminal states release money (FAIL/CANCELLED) and notify (§6.1)."""
    move("transfer_bill", bill, state, attr="state")
    bill.updated_at = world.clock.now()
    if fail_reason:
        bill.fail_reason = fail_reason
    if state in ("SUCCESS", "FAIL", "CANCELLED"):
        _bill_finished(world, bill)


def accept_transfer_bill(world: World, merchant: Merchant, bill: TransferBill) -> None:
    """Hold the money and route the bill: user confirmation, or straight to SUCCESS shortly after."""
    merchant.balance_fen -= bill.amount
    world.state.transfer_bills[(merchant.mchid, bill.out_bill_no)] = bill
    if merchant.transfer_confirm:
        move("transfer_bill", bill, "WAIT_USER_CONFIRM", attr="state")
        bill.package_info = "ABBQO+oYAAABAAAAAAB" + world.rng.alnum(40) + "=="
    arm_transfer_timer(world, bill)


def arm_transfer_timer(world: World, bill: TransferBill) -> None:
    """Schedule the bill's next automatic move (also used when state is restored from a file)."""

    def advance_to(expected: str, state: str, reason: str = "") -> None:
        with world.lock:
            if bill.state == expected:
                set_bill_state(world, bill, state, reason)

    label = f"transfer {bill.out_bill_no}"
    if bill.state == "WAIT_USER_CONFIRM":
        # Unconfirmed bills are closed after the confirmation window (UNVERIFIED length, default 24 h).
        due = bill.created_at + world.config.transfer_confirm_expiry_s / world.config.time_scale
        world.scheduler.at(due, lambda: advance_to("WAIT_USER_CONFIRM", "CANCELLED", "OVERDUE_CLOSE"), label)
    elif bill.state == "ACCEPTED":
        world.after(2.0, lambda: advance_to("ACCEPTED", "SUCCESS"), label)
    elif bill.state == "CANCELING":
        world.after(1.0, lambda: advance_to("CANCELING", "CANCELLED"), label)


def cancel_transfer_bill(world: World, bill: TransferBill) -> None:
    """CANCELING now, CANCELLED a second later ("返回成功仅表示撤销请求已受理", §6.1)."""
    set_bill_state(world, bill, "CANCELING")
    arm_transfer_timer(world, bill)


def confirm_transfer_bill(world: World, bill: TransferBill) -> None:
    """The user accepts in the mini-program: WAIT_USER_CONFIRM → TRANSFERING → SUCCESS."""
    set_bill_state(world, bill, "TRANSFERING")
    set_bill_state(world, bill, "SUCCESS")


# ------------------------------------------------------------------ red packets


def arm_redpack_timer(world: World, packet: RedPacket) -> None:
    """Unopened packets: RFUND_ING at expiry (default 24 h after sending), REFUND a minute later (§5.5).
    A group packet its seed opened stays RECEIVED; the friends' shares still unopened then go back."""

    def refunding() -> None:
        with world.lock:
            if packet.status == "SENT":
                move("redpack", packet, "RFUND_ING")
                arm_redpack_timer(world, packet)
            elif packet.status == "RECEIVED":
                refund_unopened_shares(world, packet)

    def refunded() -> None:
        with world.lock:
            if packet.status == "RFUND_ING":
                refund_redpack(world, packet)

    if packet.status == "SENT" or (packet.status == "RECEIVED" and packet.opened < len(packet.shares)):
        due = packet.send_time + world.config.redpack_expiry_s / world.config.time_scale
        world.scheduler.at(due, refunding, f"redpack expiry {packet.mch_billno}")
    elif packet.status == "RFUND_ING":
        world.after(60, refunded, f"redpack refunded {packet.mch_billno}")


def refund_redpack(world: World, packet: RedPacket) -> None:
    """Return the unopened amount to the merchant."""
    move("redpack", packet, "REFUND")
    packet.refund_time = world.clock.now()
    packet.refund_amount = packet.total_amount
    world.state.merchants[packet.mchid].balance_fen += packet.total_amount


def refund_unopened_shares(world: World, packet: RedPacket) -> None:
    """Expiry of a group packet its seed opened: the friends' unopened shares return to the merchant."""
    rest = sum(packet.shares[packet.opened :])
    if rest and packet.refund_time is None:
        packet.refund_time = world.clock.now()
        packet.refund_amount = rest
        world.state.merchants[packet.mchid].balance_fen += rest


GROUP_SHARE_MIN_FEN, GROUP_SHARE_MAX_FEN = 100, 100_000  # §5.3: every packet of a group 1.00–1000.00 yuan


def split_group(world: World, total: int, num: int) -> list[int]:
    """ALL_RAND split of a fission packet (§5.3): every share 1–1000 yuan (the caller checked the average is
    1–200; never below 1 fen), the rest cut at random; sums to ``total``."""
    floor = max(1, min(GROUP_SHARE_MIN_FEN, total // num))
    spare = total - floor * num
    cuts = sorted(world.rng.randint(0, spare) for _ in range(num - 1))
    shares = [floor + b - a for a, b in itertools.pairwise([0, *cuts, spare])]
    # No packet above 1000 yuan: the excess goes to the smallest (the average is at most 200 yuan).
    for i in range(num):
        while shares[i] > GROUP_SHARE_MAX_FEN:
            j = shares.index(min(shares))
            moved = min(shares[i] - GROUP_SHARE_MAX_FEN, GROUP_SHARE_MAX_FEN - shares[j])
            shares[i] -= moved
            shares[j] += moved
    return shares


def render_hbinfo(packet: RedPacket) -> dict[str, Any]:
    """gethbinfo reply fields (§5.5)."""
    out: dict[str, Any] = {
        "mch_billno": packet.mch_billno,
        "mch_id": packet.mchid,
        "detail_id": packet.detail_id,
        "status": packet.status,
        "send_type": "API",
        "hb_type": packet.hb_type,
        "total_num": str(packet.total_num),
        "total_amount": str(packet.total_amount),
        "send_time": cst_format(packet.send_time, "%Y-%m-%d %H:%M:%S"),
        "wishing": packet.wishing,
        "remark": packet.remark,
        "act_name": packet.act_name,
    }
    if packet.reason:
        out["reason"] = packet.reason
    if packet.refund_time is not None:
        out["refund_time"] = cst_format(packet.refund_time, "%Y-%m-%d %H:%M:%S")
        out["refund_amount"] = str(packet.refund_amount)
    return out


# ------------------------------------------------------------------ read-only payout view


def payouts_view(world: World, mchid: str | None = None) -> dict[str, Any]:
    """Every payout the sandbox actually made (or holds), for "at most one payout per bill" assertions."""
    items: list[dict[str, Any]] = []
    for p in world.state.redpacks.values():
        items.append(
            {
                "rail": "redpack",
                "mchid": p.mchid,
                "key": p.mch_billno,
                "openid": p.openid,
                "amount_fen": p.total_amount,
                "status": p.status,
                "paid": p.status in ("SENT", "RECEIVED"),
                "received": p.status == "RECEIVED",
                "refunded_fen": p.refund_amount,
            }
        )
    for t in world.state.v2_transfers.values():
        items.append(
            {
                "rail": "v2_transfer",
                "mchid": t.mchid,
                "key": t.partner_trade_no,
                "openid": t.openid,
                "amount_fen": t.amount,
                "status": t.status,
                "paid": t.status == "SUCCESS",
                "received": t.status == "SUCCESS",
                "refunded_fen": 0,
            }
        )
    for b in world.state.transfer_bills.values():
        items.append(
            {
                "rail": "transfer_bill",
                "mchid": b.mchid,
                "key": b.out_bill_no,
                "openid": b.openid,
                "amount_fen": b.amount,
                "status": b.state,
                "paid": b.state == "SUCCESS",
                "received": b.state == "SUCCESS",
                "refunded_fen": b.amount if b.state in ("FAIL", "CANCELLED") else 0,
            }
        )
    if mchid:
        items = [i for i in items if i["mchid"] == mchid]
    by_openid: dict[str, int] = {}
    for i in items:
        if i["received"]:
            by_openid[i["openid"]] = by_openid.get(i["openid"], 0) + i["amount_fen"]
    return {"payouts": items, "received_fen_by_openid": by_openid}
