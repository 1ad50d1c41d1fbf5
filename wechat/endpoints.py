"""Base URLs of the WeChat services, injectable so development can point every client at the sandbox."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WeChatEndpoints"]


@dataclass(frozen=True, slots=True)
class WeChatEndpoints:
    """Where each WeChat host lives (protocol doc §0.2); every client builds URLs from this only.

    Bases carry no trailing slash. ``timeout_seconds`` bounds connect and read of every call.
    """

    api_base: str = "https://api.weixin.qq.com"
    pay_base: str = "https://api.mch.weixin.qq.com"
    open_base: str = "https://open.weixin.qq.com"
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        for name in ("api_base", "pay_base", "open_base"):
            value: str = getattr(self, name)
            if not value.startswith(("https://", "http://")):
                raise ValueError(f"WeChatEndpoints.{name} must be an http(s) URL, got {value!r}")
            # Normalised here so callers can write f"{base}/path" without double slashes.
            object.__setattr__(self, name, value.rstrip("/"))
        if self.timeout_seconds <= 0:
            raise ValueError("WeChatEndpoints.timeout_seconds must be positive")

    def api(self, path: str) -> str:
        """Absolute URL on the OA / mini-program API host for ``path`` (leading slash optional)."""
        return f"{self.api_base}/{path.lstrip('/')}"

    def pay(self, path: str) -> str:
        """Absolute URL on the WeChat Pay host for ``path``."""
        return f"{self.pay_base}/{path.lstrip('/')}"

    def open(self, path: str) -> str:
        """Absolute URL on the OAuth (browser) host for ``path``."""
        return f"{self.open_base}/{path.lstrip('/')}"
