"""One folder (or module) per controller: what a reconcile of one object does."""
