"""The audit log: who changed what, before and after, when, and from where."""
