"""Personal two-way red packets: a consumer funds a packet for a friend (issue 12)."""
