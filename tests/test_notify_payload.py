"""notify/payload.py: the event's payload, numbers masked and reply texts left out."""

from __future__ import annotations

import json

from sftpd_agent.notify.payload import event_payload
from sftpd_agent.rules.masking import mask
from sftpd_agent.store.journal import Store
from tests import notify_support as support
from tests.notify_support import (
    T0,
    held_campaign,
    held_payload,
)

# The shared fixtures, by name (tests/notify_support.py).
store = support.store


def test_payload_masks_numbers_and_leaves_reply_texts_out(store: Store) -> None:
    campaign = held_campaign(store)
    optout = event_payload("optout.received", at=T0, campaign=None,
                           data={"numbers": ["+33612345678", "+262692123456"]})
    reply = event_payload("reply.received", at=T0, campaign=None, data={"replies": [
        {"msisdn": "+33612345678", "message": "Call me at home, Jean", "opt_out": False},
        {"msisdn": "+33698765432", "message": " stop ", "opt_out": True,
         "campaign": "promo"}]})
    held = held_payload(campaign)
    text = json.dumps([optout, reply, held])
    for secret in ("+33612345678", "+262692123456", "+33698765432", "Call me", "Jean"):
        assert secret not in text
    assert optout["data"]["numbers"] == [mask("+33612345678"), mask("+262692123456")]
    first, second = reply["data"]["replies"]
    assert first == {"msisdn": "+33612****78", "message_length": 21, "opt_out": False}
    assert second["keyword"] == "STOP" and second["campaign"] == "promo"
    assert held["at"] == "2026-11-23T08:00:00+00:00" and held["event"] == "campaign.held"
    assert held["campaign"]["invalid_by_code"] == {"msisdn": 9, "msg_too_long": 3}
    assert held["campaign"]["remote_names"] == ["SEND-12345-20261123-1000-promo.csv"]
    assert held["campaign"]["state"] == "held" and "examples" not in held["campaign"]
    assert held["data"]["file"] == "/var/lib/sftpd-agent/failed/promo.csv"
    json.loads(text)  # JSON-safe
