"""The shop, sandbox and consumer fixture of the payment tests, for the message scenarios."""

from tests.payments.conftest import shop

__all__ = ["shop"]
