"""One error family for everything WeChat answers, with a retry classification.

Three outcomes matter to a caller that moves money (protocol doc §3.4, §5.2, §6.1):

* ``retryable`` — WeChat definitely did not apply the request; try again later with the SAME key.
* ``ambiguous`` — the outcome is unknown (SYSTEMERROR, timeout after send, unparsable reply, unknown
  code); retry with the SAME key or query. Never switch to a new idempotency key on these.
* final (neither) — rejected for good (parameters, auth, business rule); fix before retrying.
"""

from __future__ import annotations

__all__ = [
    "SignatureError",
    "VerificationError",
    "WeChatError",
    "WeChatXMLError",
    "XMLSecurityError",
    "classify_api_errcode",
    "classify_v2_code",
    "classify_v3_code",
]


class WeChatError(Exception):
    """A failed WeChat call: ``code`` is WeChat's errcode / v3 code / v2 err_code as a string."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        raw_body: bytes = b"",
        retryable: bool = False,
        ambiguous: bool = False,
        api: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.raw_body = raw_body
        self.retryable = retryable
        self.ambiguous = ambiguous
        self.api = api

    @property
    def final(self) -> bool:
        """True when retrying the same request cannot succeed without a change."""
        return not (self.retryable or self.ambiguous)

    def __str__(self) -> str:
        kind = "ambiguous" if self.ambiguous else "retryable" if self.retryable else "final"
        where = f"{self.api}: " if self.api else ""
        status = f" http={self.http_status}" if self.http_status is not None else ""
        return f"{where}{self.code or '-'} ({kind}{status}) {self.message}"


class VerificationError(WeChatError):
    """A signature, timestamp, certificate or decryption check failed.

    On a response to a call that may have moved money the outcome is unknown, so callers get
    ``ambiguous=True`` by default and must query rather than re-issue with a new key (§3.3 rule 3).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "VERIFICATION_FAILED",
        http_status: int | None = None,
        raw_body: bytes = b"",
        ambiguous: bool = True,
        api: str | None = None,
    ) -> None:
        super().__init__(
            message, code=code, http_status=http_status, raw_body=raw_body, ambiguous=ambiguous, api=api
        )


SignatureError = VerificationError


class WeChatXMLError(WeChatError, ValueError):
    """A v2 / official-account XML body could not be parsed; outcome of the call is unknown."""

    def __init__(self, message: str, *, code: str = "XML_UNPARSABLE", raw_body: bytes = b"") -> None:
        super().__init__(message, code=code, raw_body=raw_body, ambiguous=True)


class XMLSecurityError(WeChatXMLError):
    """The XML carried a DTD, entity declaration or external reference (XXE / billion laughs)."""

    def __init__(self, message: str, *, raw_body: bytes = b"") -> None:
        super().__init__(message, code="XML_FORBIDDEN", raw_body=raw_body)


def _norm(code: str) -> str:
    # §3.4 DISAGREE: older docs spell SYSTEMERROR / NOTENOUGH, current ones SYSTEM_ERROR / NOT_ENOUGH.
    return code.upper().replace("_", "").replace(" ", "")


# --- Pay v3 (§3.4, §3.11, §6.1, §7a.3) ---------------------------------------------------------------
_V3_RETRYABLE = {_norm(c) for c in ("FREQUENCY_LIMITED", "NOT_ENOUGH", "RATELIMIT_EXCEEDED")}
_V3_AMBIGUOUS = {_norm(c) for c in ("SYSTEM_ERROR", "BANK_ERROR", "SERVICE_UNAVAILABLE", "USER_PAYING")}
_V3_FINAL = {
    _norm(c)
    for c in (
        "PARAM_ERROR",
        "INVALID_REQUEST",
        "APPID_MCHID_NOT_MATCH",
        "MCH_NOT_EXISTS",
        "ORDER_CLOSED",
        "ORDER_PAID",
        "SIGN_ERROR",
        "NO_AUTH",
        "OUT_TRADE_NO_USED",
        "RULE_LIMIT",
        "TRADE_ERROR",
        "ACCOUNT_ERROR",
        # Not-found is final for the query itself; after an ambiguous create the caller re-sends the
        # create with the same key rather than treating the original as failed (§3.4 golden rule).
        "ORDER_NOT_EXIST",
        "RESOURCE_NOT_EXISTS",
        "NOT_FOUND",
        "OPENID_MISMATCH",
        "USER_ACCOUNT_ABNORMAL",
        "INVALID_TRANSACTIONID",
        "RESOURCE_ALREADY_EXISTS",
        "ALREADY_EXISTS",
        "REQUEST_BLOCKED",
    )
}


def classify_v3_code(http_status: int, code: str | None) -> tuple[bool, bool]:
    """(retryable, ambiguous) for a non-2xx v3 answer; unknown codes are ambiguous (§3.4 golden rule)."""
    if code:
        norm = _norm(code)
        if norm in _V3_RETRYABLE:
            return True, False
        if norm in _V3_AMBIGUOUS:
            return False, True
        if norm in _V3_FINAL:
            return False, False
    if http_status == 429:
        return True, False
    # Anything else — 5xx, gateway errors, a code we have never seen — may have been applied.
    return False, True


# --- Pay v2 money-out (§5.2, §6.3) -------------------------------------------------------------------
_V2_RETRYABLE = {
    _norm(c)
    for c in (
        "NOTENOUGH",
        "FREQ_LIMIT",
        "SECOND_OVER_LIMITED",
        "SENDNUM_LIMIT",
        "DAY_OVER_LIMITED",
        "FREQUENCY_LIMITED",
    )
}
# gethbinfo NOT_FOUND may mean "still landing" (§5.5), so it must not read as "never sent".
_V2_AMBIGUOUS = {_norm(c) for c in ("SYSTEMERROR", "PROCESSING", "NOT_FOUND")}
_V2_FINAL = {
    _norm(c)
    for c in (
        "MONEY_LIMIT",
        "NO_AUTH",
        "CA_ERROR",
        "SIGN_ERROR",
        "SIGNERROR",
        "ILLEGAL_APPID",
        "OPENID_ERROR",
        "PARAM_ERROR",
        "XML_ERROR",
        "FATAL_ERROR",
        "SEND_FAILED",
        "AMOUNT_LIMIT",
        "NAME_MISMATCH",
        "V2_ACCOUNT_SIMPLE_BAN",
        "RECV_ACCOUNT_NOT_ALLOWED",
        "PAY_CHANNEL_NOT_ALLOWED",
        "MCHID_NOT_MATCH",
        "NOAUTH",
    )
}


def classify_v2_code(err_code: str | None) -> tuple[bool, bool]:
    """(retryable, ambiguous) for a v2 failure; missing or unknown err_code is ambiguous (§5.2 b, c)."""
    if err_code:
        norm = _norm(err_code)
        if norm in _V2_RETRYABLE:
            return True, False
        if norm in _V2_AMBIGUOUS:
            return False, True
        if norm in _V2_FINAL:
            return False, False
    return False, True


# --- OA / mini-program JSON APIs (§1, §2, §7b) ------------------------------------------------------
_API_RETRYABLE = {-1, 45011}
_API_FINAL = {
    40001,  # invalid credential: the caller refreshes its token and retries once (§1.3)
    40002,
    40003,
    40013,
    40014,
    40029,
    40125,
    40163,
    40164,
    40226,
    40243,
    41004,
    42001,
    42002,
    45009,
    48001,
    40071,
    40078,
    40079,
    40080,
    40099,
    40116,
    40122,
    40127,
    41012,
    45030,
    45031,
    45033,
}


def classify_api_errcode(errcode: int) -> tuple[bool, bool]:
    """(retryable, ambiguous) for a non-zero errcode; -1 and 45011 are "busy, try later"."""
    if errcode in _API_RETRYABLE:
        return True, False
    if errcode in _API_FINAL:
        return False, False
    return False, True
