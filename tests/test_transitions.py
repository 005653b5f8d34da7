"""Every move goes through Transitions: refused when illegal, one log line, one event."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sftpd_agent.logs import configure
from sftpd_agent.pipeline.transitions import Transitions
from sftpd_agent.rules.states import CampaignState, PartState
from sftpd_agent.store.journal import IllegalTransition, Store
from sftpd_agent.store.records import Campaign, PartPlan

C = CampaignState
T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure(stream=stream, json=True)
    yield stream
    logging.getLogger().handlers.clear()


class Events:
    def __init__(self) -> None:
        self.raised: list[tuple[str, bool]] = []

    def __call__(self, event: str, campaign: Campaign | None = None, *, quiet: bool = False,
                 **data: Any) -> None:
        self.raised.append((event, quiet))


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_each_move_is_one_line_and_at_most_one_event(tmp_path: Path,
                                                    captured: io.StringIO) -> None:
    store = Store(tmp_path / "state.db")
    events = Events()
    moves = Transitions(store, lambda: T0, events)
    campaign = moves.received(campaign_id="promo", file="promo.csv", source="1.csv")
    campaign = moves.campaign(campaign, C.VALIDATED, say={"rows": 3}, rows=3, valid=3)
    campaign = moves.campaign(campaign, C.SCHEDULED, send_at=T0, upload_at=T0)
    (part,) = moves.uploading(campaign, [PartPlan("SEND-x.csv", 10, "0" * 64, 3)],
                              suppressed=0)
    moves.part(part, PartState.PUBLISHED, bytes=10)
    said = [(line["event"], line.get("announces")) for line in lines(captured)]
    assert said == [
        ("campaign_received", "campaign.received"),
        ("campaign_validated", None),
        ("campaign_scheduled", "campaign.scheduled"),
        ("campaign_uploading", None),
        ("part_published", None),
        ("campaign_published", "campaign.published"),
    ]
    # Each event once, queued quietly: the transition's own line said it.
    assert events.raised == [("campaign.received", True), ("campaign.scheduled", True),
                             ("campaign.published", True)]
    assert store.campaign(campaign.id).state == C.PUBLISHED
    store.close()


def test_an_illegal_move_is_refused_and_says_nothing(tmp_path: Path,
                                                     captured: io.StringIO) -> None:
    store = Store(tmp_path / "state.db")
    events = Events()
    moves = Transitions(store, lambda: T0, events)
    campaign = moves.received(campaign_id="promo", file="promo.csv", source="1.csv")
    before = len(lines(captured))
    for illegal in (C.PUBLISHED, C.DONE, C.REPORTED):
        with pytest.raises(IllegalTransition):
            moves.campaign(campaign, illegal)
    held = moves.campaign(campaign, C.HELD, reason="no rows")
    with pytest.raises(IllegalTransition):
        moves.campaign(held, C.SCHEDULED)  # held is final
    assert [line["event"] for line in lines(captured)[before:]] == ["campaign_held"]
    assert [name for name, _ in events.raised] == ["campaign.received", "campaign.held"]
    assert store.campaign(campaign.id).state == C.HELD
    store.close()
