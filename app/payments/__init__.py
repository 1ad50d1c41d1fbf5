"""Money in: JSAPI payment attempts, WeChat Pay notifications, refunds, query fallback, reconciliation."""
