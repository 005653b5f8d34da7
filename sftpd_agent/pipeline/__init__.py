"""The campaign's path: outbox -> intake -> campaigns -> publication -> reports, with
retention and metrics."""
