"""The audit trail: the tamper-evident log, its anchor, the journal of a reconcile, and Events."""
