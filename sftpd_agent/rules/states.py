"""The campaign state machine, pure.

    received -> validated -> held
                          -> scheduled -> uploading -> published -> processing -> done -> reported
                                       -> held (stale)                         -> rejected

``held`` and ``rejected`` are final until the file is dropped again under a new name. A
campaign of several provider files (parts) moves as its parts do: published when every part
is, processing when the provider took one (``.lock``), done when every part is ``.done``,
rejected as soon as one is ``.reject``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class CampaignState(StrEnum):
    RECEIVED = "received"
    VALIDATED = "validated"
    HELD = "held"
    SCHEDULED = "scheduled"
    UPLOADING = "uploading"
    PUBLISHED = "published"
    PROCESSING = "processing"
    DONE = "done"
    REJECTED = "rejected"
    REPORTED = "reported"


class PartState(StrEnum):
    UPLOADING = "uploading"    # intent recorded: the file may or may not be on the server
    PUBLISHED = "published"    # renamed to .csv
    PROCESSING = "processing"  # the provider renamed it .lock
    DONE = "done"
    REJECTED = "rejected"


C = CampaignState
ALLOWED: dict[CampaignState, frozenset[CampaignState]] = {
    C.RECEIVED: frozenset({C.VALIDATED, C.HELD}),
    C.VALIDATED: frozenset({C.HELD, C.SCHEDULED}),
    C.SCHEDULED: frozenset({C.UPLOADING, C.HELD}),
    C.UPLOADING: frozenset({C.PUBLISHED, C.PROCESSING, C.DONE, C.REJECTED}),
    C.PUBLISHED: frozenset({C.PROCESSING, C.DONE, C.REJECTED}),
    C.PROCESSING: frozenset({C.DONE, C.REJECTED}),
    C.DONE: frozenset({C.REPORTED}),
    C.REJECTED: frozenset({C.REPORTED}),
    C.HELD: frozenset(),
    C.REPORTED: frozenset(),
}

WAITING = frozenset({C.RECEIVED, C.VALIDATED, C.SCHEDULED})
"""Not yet on the provider's server."""
IN_FLIGHT = frozenset({C.UPLOADING, C.PUBLISHED, C.PROCESSING})
"""On the provider's server (or being put there), outcome not known yet."""
OUTCOME = frozenset({C.DONE, C.REJECTED})
"""The provider's outcome known; its delivery report (ACK) still to come."""
FINAL = frozenset({C.HELD, *OUTCOME, C.REPORTED})
"""Nothing more happens to it (but its ACK, after an outcome)."""

P = PartState
PART_ALLOWED: dict[PartState, frozenset[PartState]] = {
    P.UPLOADING: frozenset({P.PUBLISHED, P.PROCESSING, P.DONE, P.REJECTED}),
    P.PUBLISHED: frozenset({P.PROCESSING, P.DONE, P.REJECTED}),
    P.PROCESSING: frozenset({P.DONE, P.REJECTED}),
    P.DONE: frozenset(),
    P.REJECTED: frozenset(),
}
"""A provider file moves only forward: what the remote extension proves is never undone."""
PART_WAITING = frozenset({P.PUBLISHED, P.PROCESSING})
"""On the provider's server under its final name, outcome not known yet."""
PART_FINAL = frozenset({P.DONE, P.REJECTED})
"""The provider's outcome for the file."""
PART_UPLOADED = PART_WAITING | PART_FINAL
"""Its rows were uploaded (a file the provider later rejects was uploaded all the same)."""

# Remote extension -> the part state it proves.
EXTENSION_STATE: dict[str, PartState] = {
    ".csv": PartState.PUBLISHED,
    ".lock": PartState.PROCESSING,
    ".done": PartState.DONE,
    ".reject": PartState.REJECTED,
}


def can_move(before: CampaignState, after: CampaignState) -> bool:
    return before == after or after in ALLOWED[before]


def advanced(before: PartState, seen: PartState) -> bool:
    """Whether the remote state ``seen`` is news for a part in state ``before``: a move
    :data:`PART_ALLOWED` (forward only)."""
    return seen in PART_ALLOWED[before]


def campaign_state_of(parts: Iterable[PartState]) -> CampaignState:
    """The campaign state its parts' states amount to."""
    states = list(parts)
    if not states:
        return CampaignState.UPLOADING
    if PartState.REJECTED in states:
        return CampaignState.REJECTED
    if all(s == PartState.DONE for s in states):
        return CampaignState.DONE
    if any(s in (PartState.PROCESSING, PartState.DONE) for s in states):
        return CampaignState.PROCESSING
    if all(s != PartState.UPLOADING for s in states):
        return CampaignState.PUBLISHED
    return CampaignState.UPLOADING
