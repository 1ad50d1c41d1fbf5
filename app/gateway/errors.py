"""WeChat's answers, as errors a client of Hongli can act on."""

from __future__ import annotations

from typing import ClassVar

from app.core.errors import DomainError, InvalidInput, RateLimited
from wechat.errors import WeChatError


class UpstreamError(DomainError):
    """WeChat refused or failed; ``details.wechat_code`` says how."""

    status: ClassVar[int] = 502
    code: ClassVar[str] = "wechat_error"


class UpstreamBusy(DomainError):
    status: ClassVar[int] = 503
    code: ClassVar[str] = "wechat_busy"


class LoginCodeRejected(InvalidInput):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "login_code_rejected"


# Login-code errors (protocol doc §1.1): the client must call wx.login again for a fresh code.
_LOGIN_CODE_ERRORS = {
    "40029": "the login code is invalid or expired; call wx.login again",
    "40163": "the login code was already used; call wx.login again",
    "40226": "this WeChat user is blocked for high risk",
}


def login_error(exc: WeChatError) -> DomainError:
    """Map a jscode2session / OAuth code exchange failure to a clear client error."""
    details = {"wechat_code": exc.code}
    if exc.code in _LOGIN_CODE_ERRORS:
        return LoginCodeRejected(_LOGIN_CODE_ERRORS[exc.code], details=details)
    if exc.code == "45011":
        return RateLimited(
            "WeChat rate-limits this user's logins; retry shortly", retry_after_seconds=60, details=details
        )
    if exc.code == "-1" or exc.ambiguous:
        return UpstreamBusy("WeChat is busy; retry in a moment", details=details)
    return UpstreamError("WeChat refused the login", details=details)
