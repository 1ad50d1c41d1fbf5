"""The payment tests' sandbox shop, for the development clock's tests."""

from tests.payments.conftest import shop

__all__ = ["shop"]
