"""Rebate rules: typed rule documents (:mod:`.ruledoc`) and their pure evaluation (:mod:`.rules`).

``load_rules(document)`` validates a campaign's rules; ``evaluate(order, user, rules, now=…,
budget_remaining=…)`` turns one paid order into red packets to issue and rebates to book — no database,
no clock, no I/O, so previews and replays get the same answer as the payment callback.
"""
