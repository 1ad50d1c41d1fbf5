"""Sandbox crypto against published vectors (docs: wechat-test-vectors.md §4, §7, §9, §13)."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import requests
import responses

from tests.wechat.sandbox.conftest import MCH_HOST
from wechat.sandbox import Clock, SandboxConfig, create_sandbox, crypto
from wechat.sandbox.testing import route_to_sandbox

# Official doc merchant public key (vectors §9), mchid 1900007291, serial 408B07E7…
OFFICIAL_PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAptpm+qvIDCh/9wjU26SQ
CK26ogYkBhDrYxnAaw2JbbBsp1oDbHKk+1r381NeBUG2HEFAuU+Fr72u5ot3yKdz
oF/FajAzQNKnm569/D3upKoi8mYBaST15Uig8j8qoUW1U217LL0jEHlSnHV3lcaD
TXqDpTRR4Bfz9IqOgJgFZ8/oTfEomSrjrLYef81Eyxr7ZIMQXEKKEK7V4UXKS0+/
fDsiG/cXidhzt8UbTL9vqXqxM2+IDImyO+FAc/tkBG55LmzxPto1Nq0WbnZzRM/w
Tzrd0I/8NlevxtFbphg4evlHjFNI7+GrqR87ViEwuAJJ9Je5QQjct5YJfFRWiZ5C
MQIDAQAB
-----END PUBLIC KEY-----
"""
SERIAL = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"
NONCE = "593BEC0C930BF1AFEB40B4A08C8FB242"
SIG_9A = (
    "jnks4dlrPw3ZX+ozVvSK39oa0t7OMBsg83BHAwd8BRdUFiVaQNTLTvci+wURgP1OQBbKYhFGvt7iqYpDSTQkp7Uq1sltaQKyncCyrA1g88m5bs"
    "KERQfPyT0ahSwKTYJ1CAn9QiJuSJRq1QsQs07eehbU/k9BCS51jTyc1Jpsi2H77HF9f/BnjXAOP3/sPObg6V5Ee4EzwLox684hhuMuIwHo7D8K"
    "Fk3LIHOKDcNI4It1aCXydFWNpNK+SG86VUDe5kwoDpw4Ulqfu9z8OFDGbDs9TCxEv8iqQzbpxOlEVoOe2kalSYM5kApQb3nZcxdUtoE0liJGW3"
    "RGUNE0t4v01A=="
)
SIG_9B = (
    "Lc9VXxmeonkdV8Xk9tmigQFLhl0vRWTerdmoRu01aAnYwIrD/5nsSwE1WlmZGLRlAFTNQ3QsMa0+VRDlJp1Wp5p0nO8EK68b5sJBbjouxaFciI"
    "fq1zfDWWz+jqhcMoKXI1A6dPm1AW7D4d30WsMTNzp6g23OXakIsh9LO3lUmwvTuE0BY8ncf6tNGk4wKmvXwERd/ZpoQY3MAVKz+Nakwc+2XBmz"
    "T66KcUehU5kr4IvGa/lEU5RZb/q00zP9VLdBhC/jQSX3X1UcJLCtEc4gTmib4tnmAT+bHF/e17ZAuxDNcx6rqT8gNEXqaJGG+1OflMSTU2tpyG"
    "65G4dMKdFcoA=="
)
BODY_9A = (
    '{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"Image形象店-深圳腾大-QQ公仔",'
    '"out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php",'
    '"amount":{"total":100,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}'
).encode()


def _auth(signature: str) -> str:
    return (
        f'WECHATPAY2-SHA256-RSA2048 mchid="1900007291",nonce_str="{NONCE}",signature="{signature}",'
        f'timestamp="1554208460",serial_no="{SERIAL}"'
    )


def test_official_request_signatures_are_accepted(key_pool: Any) -> None:
    keys = itertools.cycle(key_pool)
    # Inject the wall clock so the 2019 timestamps of the official examples are "now".
    app = create_sandbox(
        SandboxConfig(seed=1),
        clock=Clock(1554208460, frozen=True, wall=lambda: 1554208460.0),
        key_factory=lambda: next(keys),
    )
    admin = app.test_client()
    admin.post(
        "/_sandbox/merchants",
        json={
            "mchid": "1900007291",
            "appids": ["wxd678efh567hg6787"],
            "merchant_serial": SERIAL,
            "merchant_public_key_pem": OFFICIAL_PUBLIC_KEY,
        },
    )
    admin.post("/_sandbox/apps", json={"appid": "wxd678efh567hg6787", "kind": "miniprogram"})
    admin.post("/_sandbox/users", json={"openids": {"wxd678efh567hg6787": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        route_to_sandbox(mock, app)
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        resp = requests.post(
            f"{MCH_HOST}/v3/pay/transactions/jsapi",
            data=BODY_9A,
            timeout=5,
            headers={**headers, "Authorization": _auth(SIG_9A)},
        )
        assert resp.status_code == 200, resp.text
        resp = requests.get(
            f"{MCH_HOST}/v3/refund/domestic/refunds/123123123123",
            timeout=5,
            headers={**headers, "Authorization": _auth(SIG_9B)},
        )
        assert (resp.status_code, resp.json()["code"]) == (404, "RESOURCE_NOT_EXISTS")  # signature accepted
        resp = requests.get(
            f"{MCH_HOST}/v3/refund/domestic/refunds/123123123124",
            timeout=5,
            headers={**headers, "Authorization": _auth(SIG_9B)},
        )
        assert (resp.status_code, resp.json()["code"]) == (401, "SIGN_ERROR")


def test_v2_sign_vectors() -> None:
    params = {
        "appid": "wxd930ea5d5a258f4f",
        "body": "test",
        "device_info": "1000",
        "mch_id": "10000100",
        "nonce_str": "ibuaiVcKdpRxkhJA",
    }
    key = "192006250b4c09247ec02edce69f6a2d"
    assert crypto.v2_sign(params, key) == "9A0A8659F005D6984697E2CA0A9CF3B7"
    assert crypto.v2_sign(params, key, "HMAC-SHA256") == (
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    )


def test_aead_vector_13b() -> None:
    ct = crypto.aead_encrypt("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", "uluk4a9R25RW", "associatedData", b"message")
    assert ct == "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
    assert (
        crypto.aead_decrypt("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", "uluk4a9R25RW", "associatedData", ct)
        == b"message"
    )
    assert (
        crypto.aead_decrypt("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gc", "uluk4a9R25RW", "associatedData", ct) is None
    )


def test_wxbizmsgcrypt_vector_4c() -> None:
    reply = (
        b"<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
        b"<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n"
        b"<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n"
        b"<CreateTime>1411525903</CreateTime>\n</xml>"
    )
    aes_key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
    encrypted = crypto.wx_encrypt(aes_key, "wx49f0ab532d5d035a", reply, b"1234567890123456")
    assert encrypted.startswith("9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk")
    assert encrypted.endswith("MNMpatF9XiKzHo3")
    assert crypto.sha1_signature("123456", "1411525903", "461056294", encrypted) == (
        "407518b7649e86ef23978113f92d27afa9296533"
    )
    assert crypto.wx_decrypt(aes_key, encrypted) == (reply, "wx49f0ab532d5d035a")
    assert base64.b64decode(encrypted)  # well-formed base64
