"""WeChat Pay coupons (vouchers and merchant coupons) as campaign instruments."""
