"""WeChat identities: per-app openids and OAuth codes (protocol doc §1–§2)."""

from __future__ import annotations

from wechat.sandbox.state import OAuthCode, User
from wechat.sandbox.world import World


def openid_for(world: World, user: User, appid: str) -> str:
    """Stable per-(user, app) openid, minted on first use (28 chars like real ones)."""
    if appid not in user.openids:
        user.openids[appid] = "o" + world.rng.alnum(27)
    return user.openids[appid]


def issue_oauth_code(world: World, user: User, appid: str, scope: str) -> str:
    """A fresh single-use OAuth code, as if the user authorised in WeChat."""
    code = OAuthCode(
        world.rng.alnum(32), appid, user.id, scope, world.clock.now() + world.config.oauth_code_ttl_s
    )
    world.state.oauth_codes[code.code] = code
    return code.code
