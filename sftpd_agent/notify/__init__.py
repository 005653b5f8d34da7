"""Telling people: the durable queue, e-mail and command hooks."""
