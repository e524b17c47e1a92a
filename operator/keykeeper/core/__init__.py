"""Pure decisions: authorization, lifecycle, target plans, the formats of what is written,
status."""
