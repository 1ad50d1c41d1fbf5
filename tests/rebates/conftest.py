"""The shop, sandbox and consumer fixture of the payment tests, and their real-commit app, for the
rebate scenarios."""

from tests.payments.conftest import committed, shop

__all__ = ["committed", "shop"]
