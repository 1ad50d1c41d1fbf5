"""The payment tests' sandbox shop, for the clients it configures."""

from tests.payments.conftest import shop

__all__ = ["shop"]
