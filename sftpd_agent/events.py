"""The contract's events, and how a component raises one.

Components are given an :class:`Events` callable (the agent's ``emit``): it logs the event,
then queues it durably for e-mail and hooks. The names are the contract's.
"""

from __future__ import annotations

from typing import Protocol

from .store.records import Campaign

NAMES = (
    "campaign.received", "campaign.held", "campaign.scheduled", "campaign.published",
    "campaign.done", "campaign.rejected", "campaign.overdue", "campaign.reported",
    "optout.received", "reply.received", "remote.unreachable", "remote.recovered",
)


class Events(Protocol):
    """Raise ``event`` (about ``campaign``, with ``data``): logged and queued. ``quiet``: the
    caller has already said it in its own log line (a state transition), only queue it."""

    def __call__(self, event: str, campaign: Campaign | None = None, *, quiet: bool = False,
                 **data: object) -> None: ...
