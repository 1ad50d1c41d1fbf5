"""API keys with which a merchant's shop system calls ``/api/shop/v1/…``."""
