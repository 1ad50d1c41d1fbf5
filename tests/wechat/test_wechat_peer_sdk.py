"""Cross-checks against the independent ``wechatpayv3`` SDK (test-only peer, protocol doc header note)."""

from __future__ import annotations

import json
import time

from wechat_fakes import APIV3_KEY, private_pem, public_pem, rsa_key, wechat_headers
from wechatpayv3 import WeChatPay, WeChatPayType

from wechat.crypto import aead_encrypt
from wechat.endpoints import WeChatEndpoints
from wechat.pay_v3 import MerchantV3Credentials, PayV3Client
from wechat.verify import PlatformKeys

PUB_KEY_ID = "PUB_KEY_ID_0000000000000024101100397200000006"


def _peer() -> WeChatPay:
    # Public-key mode: the peer does not try to download /v3/certificates at construction.
    return WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid="1900007291",
        private_key=private_pem(rsa_key("merchant")),
        cert_serial_no="MERCHANTSERIAL01",
        appid="wxapp",
        apiv3_key=APIV3_KEY,
        public_key=public_pem(rsa_key("pubkey")),
        public_key_id=PUB_KEY_ID,
    )


def _ours(endpoints: WeChatEndpoints, merchant: MerchantV3Credentials) -> PayV3Client:
    keys = PlatformKeys()
    keys.add_public_key(PUB_KEY_ID, public_pem(rsa_key("pubkey")))
    return PayV3Client(merchant, keys, endpoints)


def test_pay_sign_matches_peer(endpoints: WeChatEndpoints, merchant: MerchantV3Credentials) -> None:
    params = _ours(endpoints, merchant).request_payment_params(
        "wxapp", "wx2014", timestamp="1554208460", nonce="N1"
    )
    assert params["paySign"] == _peer().sign(["wxapp", "1554208460", "N1", "prepay_id=wx2014"])


def test_notification_agrees_with_peer(endpoints: WeChatEndpoints, merchant: MerchantV3Credentials) -> None:
    resource = {"out_bill_no": "B1", "state": "SUCCESS", "transfer_amount": 100, "mch_id": "1900007291"}
    envelope = {
        "id": "EV-9",
        "create_time": "2026-01-01T00:00:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "MCHTRANSFER.BILL.FINISHED",
        "summary": "商家转账单据终态通知",
        "resource": {
            "original_type": "mch_payment",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": aead_encrypt(
                APIV3_KEY, "0123456789ab", json.dumps(resource).encode(), "mch_payment"
            ),
            "associated_data": "mch_payment",
            "nonce": "0123456789ab",
        },
    }
    body = json.dumps(envelope, ensure_ascii=False).encode()
    headers = wechat_headers(rsa_key("pubkey"), PUB_KEY_ID, body, timestamp=int(time.time()))
    ours = _ours(endpoints, merchant).parse_notification(headers, body)
    theirs = _peer().callback(headers, body)
    assert theirs is not None
    assert ours.resource == theirs["resource"] == resource
    assert ours.event_type == theirs["event_type"]
