"""Known-answer tests for wechat.crypto against the public vectors (wechat-test-vectors.md)."""

from __future__ import annotations

import base64

import pytest
import wechat_vectors as v
from hypothesis import given
from hypothesis import strategies as st
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

from wechat import crypto
from wechat.errors import VerificationError

TS = "1554208460"
NONCE = "593BEC0C930BF1AFEB40B4A08C8FB242"
BODY_9A = (
    '{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"Image形象店-深圳腾大-QQ公仔",'
    '"out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php",'
    '"amount":{"total":100,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}'
).encode()


@pytest.fixture(scope="module")
def official_key() -> crypto.rsa.RSAPrivateKey:
    return crypto.load_private_key(v.OFFICIAL_MERCHANT_KEY)


def test_v3_request_message_is_five_newline_terminated_lines() -> None:
    assert crypto.v3_request_message("get", "/v3/certificates", TS, NONCE, b"") == (
        b"GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
    )


def test_official_post_signature_9a(official_key: crypto.rsa.RSAPrivateKey) -> None:
    message = crypto.v3_request_message("POST", "/v3/pay/transactions/jsapi", TS, NONCE, BODY_9A)
    assert crypto.rsa_sha256_sign(official_key, message) == v.OFFICIAL_SIG_9A


def test_official_post_signature_9d(official_key: crypto.rsa.RSAPrivateKey) -> None:
    body = BODY_9A.replace(b'"mchid":"1900007291"', b'"mchid":"1230000109"')
    message = crypto.v3_request_message("POST", "/v3/pay/transactions/jsapi", TS, NONCE, body)
    assert crypto.rsa_sha256_sign(official_key, message) == v.OFFICIAL_SIG_9D


def test_official_authorization_header_9b(official_key: crypto.rsa.RSAPrivateKey) -> None:
    header = crypto.authorization_header(
        mchid="1900007291",
        serial_no="408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",
        private_key=official_key,
        method="GET",
        canonical_url="/v3/refund/domestic/refunds/123123123123",
        body=b"",
        timestamp=TS,
        nonce=NONCE,
    )
    assert header == v.OFFICIAL_AUTH_9B
    parsed = crypto.parse_authorization(header)
    assert parsed["signature"] == v.OFFICIAL_SIG_9B
    public = crypto.load_public_key(v.OFFICIAL_MERCHANT_PUBLIC_KEY)
    message = crypto.v3_request_message("GET", "/v3/refund/domestic/refunds/123123123123", TS, NONCE, b"")
    assert crypto.rsa_sha256_verify(public, message, parsed["signature"])


def test_derived_certificates_signature_9c(official_key: crypto.rsa.RSAPrivateKey) -> None:
    message = crypto.v3_request_message("GET", "/v3/certificates", TS, NONCE, b"")
    assert crypto.rsa_sha256_sign(official_key, message) == v.DERIVED_SIG_9C_CERTS


def test_pay_sign_9c(official_key: crypto.rsa.RSAPrivateKey) -> None:
    package = "prepay_id=wx201410272009395522657a690389285100"
    assert crypto.pay_sign_message("wxd678efh567hg6787", TS, NONCE, package) == (
        f"wxd678efh567hg6787\n{TS}\n{NONCE}\n{package}\n".encode()
    )
    sign = crypto.request_payment_sign(
        official_key, appid="wxd678efh567hg6787", timestamp=TS, nonce=NONCE, package=package
    )
    assert sign == v.DERIVED_PAYSIGN_9C


def test_wechatpy_pkcs1_key_signature_10() -> None:
    key = crypto.load_private_key(v.WECHATPY_TEST_KEY)
    message = crypto.v3_request_message("GET", "test", "1651854037", "1E3A8D73B5A4AEE787C0F68B5DAB8520", b"")
    assert message == b"GET\ntest\n1651854037\n1E3A8D73B5A4AEE787C0F68B5DAB8520\n\n"
    assert crypto.rsa_sha256_sign(key, message) == v.WECHATPY_SIG_10


def test_go_key_and_certificate_11() -> None:
    key = crypto.load_private_key(v.GO_PLATFORM_KEY)
    assert crypto.rsa_sha256_sign(key, b"source") == v.GO_SIGN_SOURCE_11
    cert_key = crypto.load_public_key(v.GO_PLATFORM_CERT)
    assert crypto.rsa_sha256_verify(cert_key, b"source", v.GO_SIGN_SOURCE_11)
    assert not crypto.rsa_sha256_verify(cert_key, b"sourcE", v.GO_SIGN_SOURCE_11)
    assert not crypto.rsa_sha256_verify(cert_key, b"source", "not base64!")


@pytest.mark.parametrize(
    "header",
    [
        "",
        "WECHATPAY2-SHA256-RSA2048",
        'OTHER mchid="1",nonce_str="2",signature="3",timestamp="4",serial_no="5"',
        'WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="2",timestamp="4",serial_no="5"',
        "WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str=2,signature=3,timestamp=4,serial_no=5",
    ],
)
def test_parse_authorization_rejects_malformed(header: str) -> None:
    with pytest.raises(ValueError):
        crypto.parse_authorization(header)


def test_parse_authorization_accepts_any_order() -> None:
    parsed = crypto.parse_authorization(
        'WECHATPAY2-SHA256-RSA2048 serial_no="5",signature="3",mchid="1",timestamp="4",nonce_str="2"'
    )
    assert parsed == {"serial_no": "5", "signature": "3", "mchid": "1", "timestamp": "4", "nonce_str": "2"}


# --- AEAD (§3.5, vectors §12-§15) ------------------------------------------------------------------


def test_aead_go_vector_13a_aes128() -> None:
    plain = crypto.aead_decrypt(
        "testAPIv3Key0000",
        "wCq51qZv4Yfg",
        "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC",
        "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
    )
    assert plain == b"Hello World"
    with pytest.raises(VerificationError) as excinfo:
        crypto.aead_decrypt(
            "testAPIv3Key1111",
            "wCq51qZv4Yfg",
            "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC",
            "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
        )
    assert excinfo.value.code == "DECRYPT_FAILED"
    with pytest.raises(VerificationError):
        crypto.aead_decrypt(
            "testAPIv3Key0000", "wCq51qZv4Yfg", "SGVsbG8gV29ybGQK", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8"
        )


def test_aead_java_vector_13b_aes256_both_ways() -> None:
    key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
    assert (
        crypto.aead_decrypt(key, "uluk4a9R25RW", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=", "associatedData")
        == b"message"
    )
    assert (
        crypto.aead_encrypt(key, "uluk4a9R25RW", b"message", "associatedData")
        == "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
    )
    assert base64.b64decode("ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=").hex() == (
        "ba5c128886a318" + "295cbdc398bce43bfa5fb43c06f3cf02"
    )


def test_aead_rejects_wrong_associated_data_and_bad_key_length() -> None:
    key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
    with pytest.raises(VerificationError):
        crypto.aead_decrypt(key, "uluk4a9R25RW", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=", "")
    with pytest.raises(VerificationError) as excinfo:
        crypto.aead_decrypt("short", "uluk4a9R25RW", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=", "associatedData")
    assert excinfo.value.code == "BAD_APIV3_KEY"


@given(st.binary(max_size=300), st.text(max_size=15))
def test_aead_round_trip(plaintext: bytes, aad: str) -> None:
    key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
    sealed = crypto.aead_encrypt(key, "abcdefghijkl", plaintext, aad)
    assert crypto.aead_decrypt(key, "abcdefghijkl", sealed, aad) == plaintext


# --- Pay v2 sign (§4.2, vectors §7) ----------------------------------------------------------------

V2_KEY = "192006250b4c09247ec02edce69f6a2d"
V2_PARAMS = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}


def test_v2_official_example_7a() -> None:
    assert crypto.v2_sign_string(V2_PARAMS, V2_KEY) == (
        "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"
        "&key=192006250b4c09247ec02edce69f6a2d"
    )
    assert crypto.v2_sign(V2_PARAMS, V2_KEY) == "9A0A8659F005D6984697E2CA0A9CF3B7"
    assert (
        crypto.v2_sign(V2_PARAMS, V2_KEY, "HMAC-SHA256")
        == "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    )


def test_v2_wechatpy_example_7b_and_empty_values_skipped() -> None:
    params = {"test1": "test1", "test2": "test2", "empty": "", "sign": "ignored"}
    assert crypto.v2_sign(params, V2_KEY) == "1E3A8D73B5A4AEE787C0F68B5DAB8520"
    assert (
        crypto.v2_sign(params, V2_KEY, "HMAC-SHA256")
        == "EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659"
    )


def test_v2_legacy_pay_sign_7c() -> None:
    params = {
        "appId": "wxd678efh567hg6787",
        "nonceStr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "package": "prepay_id=wx2017033010242291fcfe0db70013231072",
        "signType": "MD5",
        "timeStamp": "1490840662",
    }
    assert crypto.v2_sign(params, "qazwsxedcrfvtgbyhnujmikolp111111") == "22D9B4E54AB1950F51E0649E8810ACD6"


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.from_regex(r"[A-Za-z0-9]{1,10}", fullmatch=True)
    )
)
def test_v2_sign_matches_wechatpy_peer(params: dict[str, str]) -> None:
    params.pop("sign", None)
    assert crypto.v2_sign(params, V2_KEY) == calculate_signature(params, V2_KEY)
    assert crypto.v2_sign(params, V2_KEY, "HMAC-SHA256") == calculate_signature_hmac(params, V2_KEY)


def test_v2_verify_uses_declared_type_then_falls_back() -> None:
    signed = dict(V2_PARAMS, sign="9A0A8659F005D6984697E2CA0A9CF3B7")
    assert crypto.v2_verify(signed, V2_KEY)
    # Declared HMAC but signed MD5: accepted through the documented fallback (§4.3).
    md5_with_hmac_type = dict(V2_PARAMS, sign_type="HMAC-SHA256")
    md5_with_hmac_type["sign"] = crypto.v2_sign(md5_with_hmac_type, V2_KEY)
    assert crypto.v2_verify(md5_with_hmac_type, V2_KEY)
    assert not crypto.v2_verify(dict(signed, body="tampered"), V2_KEY)
    assert not crypto.v2_verify(V2_PARAMS, V2_KEY)


# --- SHA-1 signatures (vectors §2, §3, §5, §6) ------------------------------------------------------


def test_server_url_signature_3() -> None:
    assert (
        crypto.sha1_sorted_signature(["test", "1410685589", "test"])
        == "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
    )


def test_jsapi_config_signature_5() -> None:
    assert (
        crypto.jsapi_config_signature(
            jsapi_ticket="sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
            noncestr="Wm3WZYTPz0wzccnW",
            timestamp="1414587457",
            url="http://mp.weixin.qq.com?params=value",
        )
        == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    )


@pytest.mark.parametrize(
    ("code", "openid", "expected"),
    [
        ("", "", "22dce6bad4db532d4a2ef82ca2ca7bbe1e10ef28"),
        ("random_code", "", "2e9c6d12952246e071717d7baeab20c30420b5cd"),
        ("", "random_openid", "ded860a5dd4467312764bd86e544ad0579cbfad0"),
        ("random_code", "random_openid", "950dc1842852457ea573d4d6af34879c1ec093c8"),
    ],
)
def test_card_ext_signature_6(code: str, openid: str, expected: str) -> None:
    assert crypto.sha1_sorted_signature(["789", "456", "123"]) == "f7c3bc1d808e04732adf679965ccc34ca7ae3441"
    signature = crypto.card_signature(
        api_ticket="sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
        timestamp="1414587457",
        nonce_str="Wm3WZYTPz0wzccnW",
        card_id="random_card_id",
        code=code,
        openid=openid,
    )
    assert signature == expected


def test_raw_data_signature_2() -> None:
    raw = (
        '{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong",'
        '"country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}'
    )
    assert crypto.check_raw_data_signature(
        raw, "HyVFkGl5F5OQWJZZaNzBBg==", "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
    )
    assert not crypto.check_raw_data_signature(
        raw, "HyVFkGl5F5OQWJZZaNzBBg==", "75e81ceda165f4ffa64f4068af58c64b8f54b88d"
    )


def test_nonce_is_alphanumeric_and_random() -> None:
    a, b = crypto.generate_nonce(), crypto.generate_nonce()
    assert len(a) == 32 and a.isalnum() and a != b


def test_rsa_oaep_encrypt_round_trip() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP

    key = crypto.load_private_key(v.GO_PLATFORM_KEY)
    sealed = crypto.rsa_oaep_encrypt(key.public_key(), "张三")
    oaep = OAEP(mgf=MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    assert key.decrypt(base64.b64decode(sealed), oaep).decode() == "张三"
