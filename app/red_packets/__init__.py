"""In-app red packets: spendable credits with frozen rates, reserved for an order, redeemed when paid."""
