"""The payments suite's shop (an onboarded merchant with a signed-in consumer)."""

from tests.payments.conftest import shop  # noqa: F401
