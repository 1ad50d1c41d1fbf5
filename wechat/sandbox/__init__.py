"""WeChat sandbox: a local stand-in for WeChat's servers (login, OAuth, Pay v2/v3, vouchers, cards, events).

Start it in-process with :func:`create_sandbox` (and ``wechat.sandbox.testing`` for ``responses`` routing) or
as a server with ``python -m wechat.sandbox``. See ``docs/sandbox.md``.
"""

from wechat.sandbox.app import create_sandbox, world_of
from wechat.sandbox.clock import Clock
from wechat.sandbox.world import SandboxConfig, World

__all__ = ["Clock", "SandboxConfig", "World", "create_sandbox", "world_of"]
