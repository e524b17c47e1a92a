"""Process wiring: start-up, kopf handlers, work queues, settings, serving, leadership."""
