"""The state machine, pure."""

from __future__ import annotations

import itertools

from sftpd_agent.rules.states import CampaignState as C
from sftpd_agent.rules.states import PartState as P
from sftpd_agent.rules.states import advanced, campaign_state_of, can_move


def test_held_and_reported_are_final() -> None:
    for state in C:
        assert not can_move(C.HELD, state) or state == C.HELD
        assert not can_move(C.REPORTED, state) or state == C.REPORTED


def test_the_contract_path_is_allowed() -> None:
    path = [C.RECEIVED, C.VALIDATED, C.SCHEDULED, C.UPLOADING, C.PUBLISHED, C.PROCESSING,
            C.DONE, C.REPORTED]
    for before, after in itertools.pairwise(path):
        assert can_move(before, after)
    assert not can_move(C.DONE, C.UPLOADING)
    assert not can_move(C.PUBLISHED, C.SCHEDULED)


def test_parts_make_the_campaign_state() -> None:
    assert campaign_state_of([P.UPLOADING, P.PUBLISHED]) == C.UPLOADING
    assert campaign_state_of([P.PUBLISHED, P.PUBLISHED]) == C.PUBLISHED
    assert campaign_state_of([P.PUBLISHED, P.PROCESSING]) == C.PROCESSING
    assert campaign_state_of([P.DONE, P.PROCESSING]) == C.PROCESSING
    assert campaign_state_of([P.DONE, P.DONE]) == C.DONE
    assert campaign_state_of([P.DONE, P.REJECTED]) == C.REJECTED


def test_remote_news_only_moves_forward() -> None:
    assert advanced(P.UPLOADING, P.PUBLISHED)
    assert advanced(P.PUBLISHED, P.DONE)
    assert not advanced(P.PROCESSING, P.PUBLISHED)
    assert not advanced(P.DONE, P.REJECTED)
    assert advanced(P.PROCESSING, P.REJECTED)
