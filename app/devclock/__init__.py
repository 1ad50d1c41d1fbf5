"""The development clock: move Hongli's business time and the WeChat sandbox's together, and run the
sweeps that became due (``flask --app wsgi dev …``). Refused in production. See docs/development-clock.md.
"""

from __future__ import annotations

from flask import Flask

from app.settings import Settings


def init_dev_clock(app: Flask, settings: Settings) -> None:
    """Install the shared clock (outside production) and the ``dev`` commands (which refuse production)."""
    from app.core.clock import init_dev_clock as install_clock
    from app.devclock.cli import dev_cli

    install_clock(app, settings)
    app.cli.add_command(dev_cli)
