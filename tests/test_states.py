"""The state machine, pure."""

from __future__ import annotations

import itertools

from sftpd_agent.rules.states import (
    ALLOWED,
    FINAL,
    IN_FLIGHT,
    OUTCOME,
    PART_ALLOWED,
    PART_FINAL,
    PART_UPLOADED,
    PART_WAITING,
    WAITING,
    advanced,
    campaign_state_of,
    can_move,
)
from sftpd_agent.rules.states import CampaignState as C
from sftpd_agent.rules.states import PartState as P


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


def test_the_groups_cover_every_state_once() -> None:
    assert set(C) == WAITING | IN_FLIGHT | FINAL
    assert not (WAITING & IN_FLIGHT or WAITING & FINAL or IN_FLIGHT & FINAL)
    assert OUTCOME < FINAL and PART_WAITING | PART_FINAL | {P.UPLOADING} == set(P)
    assert set(P) - {P.UPLOADING} == PART_UPLOADED
    for state in FINAL - OUTCOME:
        assert not ALLOWED[state], state  # held and reported: nothing follows
    for state in OUTCOME:
        assert ALLOWED[state] == {C.REPORTED}


def test_a_part_never_moves_back_nor_past_its_outcome() -> None:
    for before, after in itertools.product(P, P):
        assert advanced(before, after) == (after in PART_ALLOWED[before])
        if after == before or before in PART_FINAL:
            assert not advanced(before, after), (before, after)
    assert not advanced(P.PUBLISHED, P.UPLOADING)
