"""Things a person must look at: suspicious callbacks, money that did not add up, risky rewards."""
