"""Every move of a campaign or a part, through one function each.

A move is refused when the state machine forbids it (the store raises
``IllegalTransition``), recorded durably with its time, said in ONE log line
(``campaign_<state>`` or ``part_<state>``, with what matters about it) and announced by at
most one event of the contract (the line names it in ``announces``; the event is queued for
e-mail and hooks without a second line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..events import Events
from ..logs import bind_campaign, get_logger
from ..rules.states import CampaignState, PartState, campaign_state_of, can_move
from ..store.journal import Store
from ..store.records import Campaign, Part, PartPlan

log = get_logger("sftpd_agent.transitions")
C = CampaignState

EVENT_OF: dict[CampaignState, str] = {
    C.RECEIVED: "campaign.received",
    C.HELD: "campaign.held",
    C.SCHEDULED: "campaign.scheduled",
    C.PUBLISHED: "campaign.published",
    C.DONE: "campaign.done",
    C.REJECTED: "campaign.rejected",
    C.REPORTED: "campaign.reported",
}
"""The contract's event announcing a campaign's arrival in a state (the others have none)."""
_WARNINGS = frozenset({C.HELD, C.REJECTED})


@dataclass
class Transitions:
    store: Store
    clock: Clock
    events: Events

    def received(self, *, campaign_id: str, file: str, source: str) -> Campaign:
        """A dropped file recorded: the campaign exists, ``received``."""
        campaign = self.store.add_campaign(campaign_id=campaign_id, file=file, source=source,
                                           at=self.clock())
        self._said(campaign, file=file)
        return campaign

    def campaign(self, campaign: Campaign, to: CampaignState, *, detail: str | None = None,
                 say: dict[str, Any] | None = None, **fields: Any) -> Campaign:
        """Move ``campaign`` to ``to`` (with any of its figures in ``fields``); ``say`` is
        what the log line and the event carry besides the campaign."""
        moved = self.store.move(campaign.id, to, at=self.clock(), detail=detail, **fields)
        self._said(moved, **(say or {}))
        return moved

    def uploading(self, campaign: Campaign, plans: Sequence[PartPlan], *,
                  suppressed: int, **fields: Any) -> list[Part]:
        """The intent: the provider files recorded, the campaign ``uploading`` (or, for a
        later group of send times, the files added to the campaign on its way). The parts
        recorded now."""
        names = {plan.remote_name for plan in plans}
        parts = [part for part in self.store.add_parts(campaign.id, plans, at=self.clock(),
                                                       suppressed=suppressed, **fields)
                 if part.remote_name in names]
        say = {"parts": len(plans), "suppressed": suppressed, "rows": sum(p.rows for p in plans)}
        if campaign.state == C.SCHEDULED:
            self._said(self.store.campaign(campaign.id), **say)
        else:  # a later group: the campaign's state does not change, no event
            with bind_campaign(campaign.campaign_id):
                log.info("campaign_group_uploading", state=str(campaign.state),
                         remote_names=[p.remote_name for p in plans], **say)
        return parts

    def part(self, part: Part, to: PartState, **say: Any) -> Campaign | None:
        """Move a provider file to ``to``; its campaign follows its parts (the furthest state
        all of them reached). The campaign when it moved, else None."""
        self.store.move_part(part, to, at=self.clock())
        campaign = self.store.campaign(part.campaign)
        with bind_campaign(campaign.campaign_id):
            log.info(f"part_{to}", remote_name=part.remote_name, **say)
        return self.follow_parts(campaign)

    def follow_parts(self, campaign: Campaign) -> Campaign | None:
        """Move ``campaign`` to the state its parts amount to, if it may. While a group of
        its send times is still to go it is not done (processing at most); once rejected,
        its groups still to go are not sent (a rejected campaign is final)."""
        target = campaign_state_of(p.state for p in self.store.parts(campaign.id))
        if campaign.next_upload_at is not None:
            if target == C.DONE:
                target = C.PROCESSING
            elif target == C.REJECTED:
                campaign = self._drop_groups(campaign)
        if target == campaign.state or not can_move(campaign.state, target):
            return None
        return self.campaign(campaign, target)

    def _drop_groups(self, campaign: Campaign) -> Campaign:
        reason = "not sent: a file of the campaign was rejected by the provider"
        groups = [dict(g, state="skipped", reason=reason) if g.get("state") == "waiting"
                  or "state" not in g else g for g in campaign.summary.get("groups", [])]
        self.store.update_campaign(campaign.id, next_upload_at=None,
                                   summary={**campaign.summary, "groups": groups})
        with bind_campaign(campaign.campaign_id):
            log.warning("campaign_groups_dropped", reason=reason,
                        groups=sum(1 for g in groups if g.get("reason") == reason))
        return self.store.campaign(campaign.id)

    def _said(self, campaign: Campaign, **say: Any) -> None:
        event = EVENT_OF.get(campaign.state)
        said = log.warning if campaign.state in _WARNINGS else log.info
        with bind_campaign(campaign.campaign_id):
            if event is None:
                said(f"campaign_{campaign.state}", **say)
            else:
                said(f"campaign_{campaign.state}", announces=event, **say)
        if event is not None:
            self.events(event, campaign, quiet=True, **say)
