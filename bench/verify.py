"""``notify-verify``: verifying and decrypting one WeChat Pay notification, in-process, against ``wechatpayv3``.

Both sides get the same signed, encrypted ``TRANSACTION.SUCCESS`` (the bytes and headers ``notify-full``
posts, as the view hands them on) and check it with the same public key, parsed once (as
``app.gateway.clients.platform_keys`` keeps it per merchant; ``wechatpayv3`` parses it at construction).

- ours, ``notify-verify``: what ``handle_v3_notification`` does before touching the database —
  ``parse_notification`` (headers, ±5 min timestamp, probe refusal, serial, RSA signature, AEAD
  decryption, the JSON of both) with the app's ``PendingLog`` hook, and the gateway-log row that hook
  makes of it (the redacted record; only the INSERT is left out);
- ours, ``notify-verify-bare``: ``parse_notification`` without a hook (what ``PayV3Client.parse_notification``
  does): the verification and decryption alone;
- theirs: ``WeChatPay.callback(headers, body)`` of ``wechatpayv3`` 2.0.4 (public-key mode): signature,
  decryption, the JSON — no timestamp window, no probe check, no record.

Rounds alternate (theirs, ours, bare, …); each ratio is ours / theirs in calls per second, and the
median of the per-round ratios is reported. ≥ 1 means ours is at least as fast.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from bench.seed import PUBLIC_KEY_ID, Attempt, PayMerchant, _private_pem, _public_pem, transaction_success

GOAL_RATIO = 1.0
CASE = "notify-verify"
BARE_CASE = "notify-verify-bare"
CASES = (CASE, BARE_CASE)


@dataclass(frozen=True)
class VerifyResult:
    theirs_rate: float
    ours_rate: float
    bare_rate: float
    ratio: float
    bare_ratio: float


def _sides() -> tuple[Callable[[], object], Callable[[], object], Callable[[], object]]:
    from wechatpayv3 import WeChatPay, WeChatPayType

    from app.gateway.log import PendingLog
    from wechat.crypto import generate_nonce
    from wechat.notifications import parse_notification
    from wechat.verify import PlatformKeys

    platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    merchant = PayMerchant(
        slug="bench-verify",
        mchid="1600000001",
        appid="wx0123456789abcdef",
        apiv3_key=generate_nonce(32),
        openid=f"o{generate_nonce(27)}",
        platform_key=platform_key,
        attempts=(Attempt("HL00000001P1", 12_80),),
    )
    request = transaction_success(merchant, merchant.attempts[0])
    body = request.body
    # As the view passes them on: dict(request.headers.items()) of what http.client sent.
    headers = {"Host": "127.0.0.1:8000", "Accept-Encoding": "identity", "Content-Length": str(len(body))}
    headers |= request.headers
    keys = PlatformKeys()
    keys.add_public_key(PUBLIC_KEY_ID, _public_pem(platform_key))
    apiv3_key = merchant.apiv3_key
    peer = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=merchant.mchid,
        private_key=_private_pem(merchant_key),
        cert_serial_no="BENCH0001",
        appid=merchant.appid,
        apiv3_key=apiv3_key,
        public_key=_public_pem(platform_key),
        public_key_id=PUBLIC_KEY_ID,
    )

    def theirs() -> object:
        return peer.callback(headers, body)

    def ours() -> object:
        log = PendingLog(merchant_id=1)
        notification = parse_notification(headers, body, keys=keys, apiv3_key=apiv3_key, hook=log)
        return notification, log.rows(order_id=1)

    def bare() -> object:
        return parse_notification(headers, body, keys=keys, apiv3_key=apiv3_key)

    expected = "HL00000001P1"
    peer_result = theirs()
    assert isinstance(peer_result, dict) and peer_result["resource"]["out_trade_no"] == expected
    [row] = ours()[1]  # type: ignore[index]
    assert row["verified"] and row["idempotency_key"] == expected and merchant.openid not in row["body"]
    return theirs, ours, bare


def _rate(call: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return calls / (time.perf_counter() - started)


def measure_verify(rounds: int, calls: int = 3000) -> VerifyResult:
    """Interleaved rounds of ``calls`` calls of each side (after a warm-up); medians and median ratios."""
    theirs, ours, bare = _sides()
    for side in (theirs, ours, bare):
        _rate(side, calls // 4 or 1)
    rates: dict[str, list[float]] = {"theirs": [], "ours": [], "bare": []}
    ratios: list[float] = []
    bare_ratios: list[float] = []
    for _ in range(rounds):
        base = _rate(theirs, calls)
        rates["theirs"].append(base)
        rates["ours"].append(_rate(ours, calls))
        rates["bare"].append(_rate(bare, calls))
        ratios.append(rates["ours"][-1] / base)
        bare_ratios.append(rates["bare"][-1] / base)
    return VerifyResult(
        theirs_rate=statistics.median(rates["theirs"]),
        ours_rate=statistics.median(rates["ours"]),
        bare_rate=statistics.median(rates["bare"]),
        ratio=statistics.median(ratios),
        bare_ratio=statistics.median(bare_ratios),
    )
