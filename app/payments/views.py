"""WeChat Pay's notification endpoints (one URL per merchant). Public: the signature is the check."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.auth.guards import public
from app.core.tx import commit
from app.metrics.instruments import count_notification
from app.payments.notifications import handle_v2_notification, handle_v3_notification
from wechat.pay_v2 import v2_reply

bp = Blueprint("wechat_pay_notify", __name__, url_prefix="/wechat")


@bp.post("/<slug>/pay/notify")
@public
def notify_v3(slug: str) -> Response | tuple[Response, int]:
    """v3 notifications: 204 when applied (or a duplicate), else an error WeChat will retry."""
    headers = dict(request.headers.items())
    answer = handle_v3_notification(slug=slug, headers=headers, body=request.get_data(cache=False))
    # Commit also when refusing: the gateway log and review flags record the refusal.
    commit()
    count_notification(answer.status, "v3")
    if answer.ok:
        return Response(status=204)
    return jsonify({"code": "FAIL", "message": answer.message}), answer.status


@bp.post("/<slug>/pay/notify-v2")
@public
def notify_v2(slug: str) -> Response:
    """Legacy v2 XML notifications, answered in WeChat's XML format."""
    ok, message = handle_v2_notification(slug=slug, body=request.get_data(cache=False))
    commit()
    count_notification(204 if ok else 400, "v2")
    return Response(v2_reply(ok, message), status=200, mimetype="application/xml")
