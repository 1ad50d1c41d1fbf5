"""Sandbox-only admin API under ``/_sandbox/``: registration, faults, clock and read-only views.

Nothing here exists at WeChat. User actions (pay, confirm, open, …) are in ``routes_actions``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request

from wechat.sandbox import crypto, oa
from wechat.sandbox.admin import AdminError, app_of, install_error_handlers, json_body, run, user_of
from wechat.sandbox.clock import rfc3339
from wechat.sandbox.faults import APIS, DEFAULT_TIMEOUT_DELAY_S, MODES
from wechat.sandbox.identity import issue_oauth_code, openid_for
from wechat.sandbox.payouts import payouts_view
from wechat.sandbox.state import App, BillMismatch, LoginCode, Merchant, PhoneCode, User
from wechat.sandbox.world import current_world

bp = Blueprint("sandbox_admin", __name__, url_prefix="/_sandbox")
install_error_handlers(bp)


def _merchant_view(m: Merchant, private_pem: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "mchid": m.mchid,
        "appids": sorted(m.appids),
        "apiv3_key": m.apiv3_key,
        "v2_key": m.v2_key,
        "merchant_serial": m.merchant_serial,
        "platform_serial": m.platform_serial,
        "platform_certificate_pem": m.platform_cert_pem,
        "public_key_id": m.pubkey_id,
        "public_key_pem": crypto.public_key_pem(m.pubkey_key.public_key()),
        "sign_mode": m.sign_mode,
        "platform_certificates": m.platform_certificates,
        "notify_url": m.notify_url,
        "coupon_notify_url": m.coupon_notify_url,
        "transfer_confirm": m.transfer_confirm,
        "duplicate_notifications": m.duplicate_notifications,
        "probe_notifications": m.probe_notifications,
        "balance_fen": m.balance_fen,
        "merchant_certificate_pem": m.merchant_cert_pem,
    }
    if private_pem is not None:
        out["merchant_private_key_pem"] = private_pem
    return out


_SETTINGS = (
    "sign_mode",
    "platform_certificates",
    "notify_url",
    "coupon_notify_url",
    "transfer_confirm",
    "duplicate_notifications",
    "probe_notifications",
)


def _apply_settings(m: Merchant, body: dict[str, Any]) -> None:
    if body.get("sign_mode", m.sign_mode) not in ("platform", "public_key", "mixed"):
        raise AdminError(
            422, "invalid_field", "sign_mode must be platform, public_key or mixed", {"field": "sign_mode"}
        )
    for key in _SETTINGS:
        if key in body:
            setattr(m, key, body[key])


# ------------------------------------------------------------------ merchants, apps, users


@bp.post("/merchants")
def create_merchant() -> tuple[Response, int]:
    """Register a merchant; generates whatever key material is not supplied."""
    world = current_world()
    body = json_body()
    private_pem: str | None = None
    merchant_key = None
    if body.get("merchant_public_key_pem"):
        if not body.get("merchant_serial"):
            raise AdminError(
                422,
                "invalid_field",
                "merchant_serial is required with a public key",
                {"field": "merchant_serial"},
            )
        try:
            merchant_public = crypto.load_public_key(str(body["merchant_public_key_pem"]))
        except ValueError as exc:
            raise AdminError(422, "invalid_field", str(exc), {"field": "merchant_public_key_pem"}) from exc
    else:
        merchant_key = world.key_factory()
        merchant_public = merchant_key.public_key()
        private_pem = crypto.private_key_pem(merchant_key)
    platform_key = world.key_factory()
    pubkey_key = world.key_factory()
    with world.lock:
        rng = world.rng
        mchid = str(body.get("mchid") or "19" + rng.digits(8))
        if mchid in world.state.merchants:
            raise AdminError(409, "exists", f"merchant {mchid} already registered")
        apiv3_key = str(body.get("apiv3_key") or rng.alnum(32))
        if len(apiv3_key.encode()) != 32:
            raise AdminError(
                422, "invalid_field", "apiv3_key must be 32 ASCII characters", {"field": "apiv3_key"}
            )
        serial_hex = rng.choice("1234567") + rng.hex(39)
        wall = world.clock.wall()
        not_before, not_after = wall - 86400, wall + 5 * 365 * 86400
        cert_pem = crypto.self_signed_certificate(
            platform_key,
            int(serial_hex, 16),
            dt.datetime.fromtimestamp(not_before, dt.UTC),
            dt.datetime.fromtimestamp(not_after, dt.UTC),
        )
        merchant = Merchant(
            mchid=mchid,
            appids=set(body.get("appids") or []),
            apiv3_key=apiv3_key,
            v2_key=str(body.get("v2_key") or rng.alnum(32)),
            merchant_serial=str(body.get("merchant_serial") or rng.hex(40)).upper(),
            merchant_public_key=merchant_public,
            platform_key=platform_key,
            platform_serial=serial_hex,
            platform_cert_pem=cert_pem,
            platform_cert_not_before=not_before,
            platform_cert_not_after=not_after,
            pubkey_key=pubkey_key,
            pubkey_id="PUB_KEY_ID_" + rng.digits(34),
            balance_fen=int(body.get("balance_fen", 0)),
        )
        _apply_settings(merchant, body)
        merchant.merchant_cert_pem = world.ca().merchant_certificate(
            merchant_public, mchid, dt.datetime.fromtimestamp(wall, dt.UTC)
        )
        world.state.merchants[mchid] = merchant
        return jsonify(_merchant_view(merchant, private_pem)), 201


@bp.get("/tls/ca")
def tls_ca() -> Response:
    """The sandbox CA certificate: trust it for ``--tls`` servers (``requests(..., verify=path)``)."""
    return jsonify({"ca_certificate_pem": current_world().ca().cert_pem})


@bp.get("/merchants/<mchid>")
def get_merchant(mchid: str) -> Response:
    world = current_world()
    with world.lock:
        m = world.state.merchants.get(mchid)
        if m is None:
            raise AdminError(404, "not_found", f"merchant {mchid} not registered")
        return jsonify(_merchant_view(m))


@bp.post("/merchants/<mchid>/settings")
def merchant_settings(mchid: str) -> Response:
    """Change sign mode, notify URLs, duplicate/probe deliveries, transfer confirmation."""
    world = current_world()
    with world.lock:
        m = world.state.merchants.get(mchid)
        if m is None:
            raise AdminError(404, "not_found", f"merchant {mchid} not registered")
        _apply_settings(m, json_body())
        if "appids" in json_body():
            m.appids = set(json_body()["appids"])
        return jsonify(_merchant_view(m))


@bp.post("/merchants/<mchid>/topup")
def topup(mchid: str) -> Response:
    """Add integer fen to the merchant balance (fixes NOT_ENOUGH / NOTENOUGH)."""
    world = current_world()
    amount = json_body().get("amount_fen")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise AdminError(
            422, "invalid_field", "amount_fen must be a positive integer", {"field": "amount_fen"}
        )
    with world.lock:
        m = world.state.merchants.get(mchid)
        if m is None:
            raise AdminError(404, "not_found", f"merchant {mchid} not registered")
        m.balance_fen += amount
        return jsonify({"mchid": mchid, "balance_fen": m.balance_fen})


@bp.post("/apps")
def create_app() -> tuple[Response, int]:
    """Register a mini-program or official account (optionally bound to merchants via ``mchids``)."""
    world = current_world()
    body = json_body()
    kind = body.get("kind", "miniprogram")
    if kind not in ("miniprogram", "official"):
        raise AdminError(422, "invalid_field", "kind must be miniprogram or official", {"field": "kind"})
    aes_key = str(body.get("encoding_aes_key") or "")
    if aes_key and len(aes_key) != 43:
        raise AdminError(
            422, "invalid_field", "encoding_aes_key must be 43 characters", {"field": "encoding_aes_key"}
        )
    with world.lock:
        rng = world.rng
        app = App(
            appid=str(body.get("appid") or "wx" + rng.hex(16).lower()),
            secret=str(body.get("secret") or rng.hex(32).lower()),
            kind=kind,
            token=str(body.get("token") or rng.alnum(16)),
            encoding_aes_key=aes_key or rng.alnum(43),
            server_url=body.get("server_url"),
            safe_mode=bool(body.get("safe_mode", False)),
            compatible_mode=bool(body.get("compatible_mode", False)),
            original_id=str(body.get("original_id") or "gh_" + rng.hex(12).lower()),
            unionid_bound=bool(body.get("unionid_bound", True)),
        )
        if app.appid in world.state.apps:
            raise AdminError(409, "exists", f"app {app.appid} already registered")
        world.state.apps[app.appid] = app
        for mchid in body.get("mchids") or []:
            if mchid not in world.state.merchants:
                raise AdminError(404, "not_found", f"merchant {mchid} not registered")
            world.state.merchants[mchid].appids.add(app.appid)
        for user in world.state.users.values():
            openid_for(world, user, app.appid)
        return jsonify(vars(app)), 201


def _user_view(u: User) -> dict[str, Any]:
    return {"id": u.id, "unionid": u.unionid, "nickname": u.nickname, "openids": dict(u.openids)}


@bp.post("/users")
def create_user() -> tuple[Response, int]:
    """A WeChat user with one openid per registered app (or the given ``openids``) and a unionid."""
    world = current_world()
    body = json_body()
    with world.lock:
        uid = str(body.get("id") or "user-" + world.rng.hex(8).lower())
        if uid in world.state.users:
            raise AdminError(409, "exists", f"user {uid} exists")
        user = User(
            uid, str(body.get("unionid") or "o" + world.rng.alnum(27)), str(body.get("nickname", uid))
        )
        fixed = body.get("openids") or {}
        if not isinstance(fixed, dict):
            raise AdminError(422, "invalid_field", "openids must map appid to openid", {"field": "openids"})
        user.openids.update({str(k): str(v) for k, v in fixed.items()})  # e.g. openids from doc examples
        for appid in sorted(world.state.apps):
            openid_for(world, user, appid)
        world.state.users[uid] = user
        return jsonify(_user_view(user)), 201


@bp.get("/users/<uid>")
def get_user(uid: str) -> Response:
    world = current_world()
    with world.lock:
        return jsonify(_user_view(user_of(world, uid)))


@bp.post("/users/<uid>/login-code")
def login_code(uid: str) -> Response:
    """A fresh ``wx.login()`` code for a mini-program (single use, 5 min)."""
    world = current_world()
    body = json_body()
    with world.lock:
        user, app = user_of(world, uid), app_of(world, body.get("appid"))
        code = LoginCode(
            world.rng.alnum(32), app.appid, user.id, world.clock.now() + world.config.login_code_ttl_s
        )
        world.state.login_codes[code.code] = code
        return jsonify(
            {
                "code": code.code,
                "expires_in": world.config.login_code_ttl_s,
                "openid": openid_for(world, user, app.appid),
            }
        )


@bp.post("/users/<uid>/oauth-code")
def oauth_code(uid: str) -> Response:
    """The code an OA web-OAuth redirect would carry, without the browser round trip."""
    world = current_world()
    body = json_body()
    scope = body.get("scope", "snsapi_base")
    if scope not in ("snsapi_base", "snsapi_userinfo"):
        raise AdminError(
            422, "invalid_field", "scope must be snsapi_base or snsapi_userinfo", {"field": "scope"}
        )
    with world.lock:
        user, app = user_of(world, uid), app_of(world, body.get("appid"))
        return jsonify(
            {
                "code": issue_oauth_code(world, user, app.appid, scope),
                "expires_in": world.config.oauth_code_ttl_s,
            }
        )


@bp.post("/users/<uid>/encrypted-data")
def encrypted_data(uid: str) -> Response:
    """``encryptedData``/``iv`` as ``wx.getUserInfo``-style APIs deliver them, under the user's latest
    session_key for the app; ``data`` gets a ``watermark {appid, timestamp}`` (§1.2)."""
    world = current_world()
    body = json_body()
    payload = body.get("data", {})
    if not isinstance(payload, dict):
        raise AdminError(422, "invalid_field", "data must be a JSON object", {"field": "data"})
    with world.lock:
        user, app = user_of(world, uid), app_of(world, body.get("appid"))
        session_key = world.state.session_keys.get((user.id, app.appid))
        if session_key is None:
            raise AdminError(409, "no_session", "call jscode2session for this user and app first")
        plain = {**payload, "watermark": {"timestamp": int(world.clock.now()), "appid": app.appid}}
        iv = world.rng.bytes(16)
        raw = json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()
        return jsonify(
            {
                "encryptedData": crypto.wxa_encrypt(session_key, iv, raw),
                "iv": base64.b64encode(iv).decode(),
                "session_key": session_key,
            }
        )


@bp.post("/users/<uid>/phone-code")
def phone_code(uid: str) -> Response:
    """The user taps a ``getPhoneNumber`` button and agrees: a code for ``phone`` (11 digits)."""
    world = current_world()
    body = json_body()
    phone = str(body.get("phone", ""))
    if not re.fullmatch(r"1\d{10}", phone):
        raise AdminError(422, "invalid_field", "phone must be 11 digits starting with 1", {"field": "phone"})
    with world.lock:
        user, app = user_of(world, uid), app_of(world, body.get("appid"))
        code = PhoneCode(world.rng.hex(32), app.appid, user.id, phone, world.clock.now() + 300)
        world.state.phone_codes[code.code] = code
        return jsonify({"code": code.code})


@bp.post("/users/<uid>/subscribe-consent")
def subscribe_consent(uid: str) -> Response:
    """The user answers ``wx.requestSubscribeMessage`` for ``template_ids`` (``accept``: true by default);
    returns what the mini-program gets back, which it reports to Hongli."""
    world = current_world()
    body = json_body()
    template_ids = body.get("template_ids")
    if not isinstance(template_ids, list) or not all(isinstance(t, str) for t in template_ids):
        raise AdminError(
            422, "invalid_field", "template_ids must be a list of strings", {"field": "template_ids"}
        )
    with world.lock:
        user, app = user_of(world, uid), app_of(world, body.get("appid"))
        return jsonify(oa.subscribe_consent(world, app, user, template_ids, bool(body.get("accept", True))))


@bp.get("/messages")
def sent_messages() -> Response:
    """Subscribe and template messages users received, oldest first."""
    world = current_world()
    with world.lock:
        return jsonify({"messages": [dataclasses.asdict(m) for m in world.state.sent_messages]})


@bp.post("/users/<uid>/follow")
def follow(uid: str) -> Response:
    """The user follows the official account (``ticket``: by scanning that parametric QR code): pushes
    a ``subscribe`` event."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        user, app = user_of(world, uid), app_of(world, body.get("appid"))
        openid = oa.follow(world, app, user, body.get("ticket"), str(body.get("event_key", "")))
        return {"openid": openid}

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@bp.post("/users/<uid>/scan")
def scan(uid: str) -> Response:
    """The user scans the parametric QR code ``ticket``: ``SCAN`` if they follow, ``subscribe`` if not."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        user, app = user_of(world, uid), app_of(world, body.get("appid"))
        oa.scan(world, app, user, str(body.get("ticket", "")))
        return {"openid": openid_for(world, user, app.appid)}

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@bp.post("/users/<uid>/unfollow")
def unfollow(uid: str) -> Response:
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        user, app = user_of(world, uid), app_of(world, body.get("appid"))
        oa.unfollow(world, app, user)
        return {"openid": openid_for(world, user, app.appid)}

    return jsonify(run(world, act, bool(body.get("deliver", True))))


@bp.post("/users/<uid>/message")
def message(uid: str) -> Response:
    """The user sends the official account a text message."""
    world = current_world()
    body = json_body()

    def act() -> dict[str, Any]:
        user, app = user_of(world, uid), app_of(world, body.get("appid"))
        return {"msg_id": oa.text(world, app, user, str(body.get("content", "")))}

    return jsonify(run(world, act, bool(body.get("deliver", True))))


# ------------------------------------------------------------------ faults, clock, views


@bp.post("/faults")
def arm_fault() -> tuple[Response, int]:
    """Arm a fault for the next ``count`` calls of ``api``."""
    world = current_world()
    body = json_body()
    try:
        fault = world.faults.arm(
            str(body.get("api", "")),
            str(body.get("mode", "")),
            count=int(body.get("count", 1)),
            code=None if body.get("code") is None else str(body["code"]),
            status=body.get("status"),
            message=body.get("message"),
            delay_s=float(body.get("delay_s", DEFAULT_TIMEOUT_DELAY_S)),
            after_commit=bool(body.get("after_commit", False)),
            mchid=body.get("mchid"),
        )
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        raise AdminError(
            422, "invalid_field", str(exc), {"field": field, "apis": list(APIS), "modes": list(MODES)}
        ) from exc
    return jsonify(fault.as_dict()), 201


@bp.get("/faults")
def list_faults() -> Response:
    return jsonify({"faults": [f.as_dict() for f in current_world().faults.list()]})


@bp.delete("/faults")
def clear_faults() -> tuple[str, int]:
    current_world().faults.clear()
    return "", 204


@bp.get("/clock")
def get_clock() -> Response:
    world = current_world()
    now = world.clock.now()
    return jsonify(
        {
            "now": now,
            "now_rfc3339": rfc3339(now),
            "time_scale": world.config.time_scale,
            "pending": [{"due": rfc3339(d), "label": label} for d, label in world.scheduler.pending()],
        }
    )


@bp.post("/clock/advance")
def advance_clock() -> Response:
    """Advance business time by ``seconds``; timers and deliveries fire in due order on the way."""
    world = current_world()
    seconds = json_body().get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise AdminError(422, "invalid_field", "seconds must be a non-negative number", {"field": "seconds"})
    fired = world.advance(float(seconds))
    return jsonify({"now": rfc3339(world.clock.now()), "fired": fired})


@bp.get("/payouts")
def payouts() -> Response:
    world = current_world()
    with world.lock:
        return jsonify(payouts_view(world, request.args.get("mchid")))


@bp.get("/notifications")
def notifications() -> Response:
    """Delivery log: every notification with its attempts, plaintext resource, body and last headers."""
    world = current_world()
    owner = request.args.get("owner")
    event_type = request.args.get("event_type")
    with world.lock:
        items = [
            n.as_dict()
            for n in world.notifier.log()
            if (owner is None or n.owner == owner) and (event_type is None or n.event_type == event_type)
        ]
    return jsonify({"notifications": items})


_TABLES = (
    "orders",
    "refunds",
    "transfer_bills",
    "redpacks",
    "v2_transfers",
    "stocks",
    "coupons",
    "cards",
    "card_codes",
)


@bp.get("/state/<table>")
def state_table(table: str) -> Response:
    """Read-only dump of one state table (orders, refunds, transfer_bills, redpacks, …) for debugging."""
    if table not in _TABLES:
        raise AdminError(404, "not_found", f"unknown table {table!r}", {"tables": list(_TABLES)})
    world = current_world()
    with world.lock:
        rows = list(getattr(world.state, table).values())
        return jsonify({table: [dataclasses.asdict(row) for row in rows]})


@bp.post("/notifications/deliver")
def deliver_now() -> Response:
    """Attempt every delivery already due (useful with ``deliver: false``)."""
    return jsonify({"fired": current_world().run_due()})


@bp.post("/bills/mismatch")
def bill_mismatch() -> tuple[Response, int]:
    """Make the trade bill disagree with reality: ``missing`` row, ``extra`` row, or wrong ``amount``."""
    world = current_world()
    body = json_body()
    kind = body.get("kind")
    if kind not in ("missing", "extra", "amount"):
        raise AdminError(422, "invalid_field", "kind must be missing, extra or amount", {"field": "kind"})
    if not re.match(r"^\d{4}-\d{2}-\d{2}$", str(body.get("bill_date", ""))):
        raise AdminError(422, "invalid_field", "bill_date must be YYYY-MM-DD", {"field": "bill_date"})
    amount = body.get("amount_fen", 0)
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise AdminError(422, "invalid_field", "amount_fen must be integer fen", {"field": "amount_fen"})
    with world.lock:
        world.state.bill_mismatches.append(
            BillMismatch(
                str(body.get("mchid", "")),
                str(body["bill_date"]),
                kind,
                str(body.get("out_trade_no", "")),
                amount,
            )
        )
    return jsonify({"ok": True}), 201
