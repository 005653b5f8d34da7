"""notify/email.py: the words of an e-mail (pure), and sending it to a real SMTP server
(aiosmtpd: STARTTLS, implicit TLS, AUTH PLAIN and LOGIN, an untrusted certificate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from sftpd_agent.config import Settings
from sftpd_agent.notify.email import body_of, subject_of
from sftpd_agent.notify.payload import event_payload
from sftpd_agent.notify.queue import (
    Notifications,
)
from sftpd_agent.store.journal import Store
from tests import notify_support as support
from tests.notify_support import (
    T0,
    Config,
    Mailbox,
    Tls,
    email_settings,
    figures,
    held_campaign,
    held_payload,
    make_settings,
    rows,
    send,
    start_smtp,
)
from tests.servers import ManualClock

# The shared fixtures, by name (tests/notify_support.py).
tls = support.tls
mailbox = support.mailbox
smtp_port = support.smtp_port
smtp = support.smtp
clock = support.clock
store = support.store


@pytest.mark.parametrize(("event", "acks", "data", "subject"), [
    ("campaign.held", {}, {}, "campaign promo held: 12 of 100 rows invalid (12.0%)"),
    ("campaign.done", {}, {}, "campaign promo done"),
    ("campaign.rejected", {}, {}, "campaign promo rejected by the provider"),
    ("campaign.reported", {"failed": 5, "sent": 985}, {},
     "campaign promo delivery report: 985 sent, 5 failed"),
    ("campaign.scheduled", {}, {}, "campaign promo scheduled for 2026-11-23 10:00 Europe/Paris"),
    ("optout.received", {}, {"numbers": ["+33612345678"] * 3}, "3 opt-outs received"),
    ("reply.received", {}, {"replies": [{"msisdn": "+33612345678", "message": "x"}]},
     "1 reply received"),
    ("remote.unreachable", {}, {"reason": "connection refused\nby peer", "permanent": False},
     "SFTP server unreachable: connection refused by peer"),
])
def test_subjects_say_what_happened_to_which_campaign(
    store: Store, event: str, acks: dict[str, int], data: dict[str, Any], subject: str,
) -> None:
    campaign = held_campaign(store)
    if acks:
        store.update_campaign(campaign.id, summary={**campaign.summary, "acks": acks})
        campaign = store.campaign(campaign.id)
    with_campaign = campaign if event.startswith("campaign.") else None
    payload = event_payload(event, at=T0, campaign=with_campaign, data=data)
    assert subject_of(payload, Settings().tz) == f"[sftpd-agent] {subject}"


def test_delivery_report_body_has_the_figures_per_status(store: Store) -> None:
    campaign = held_campaign(store)
    store.update_campaign(campaign.id, summary={**campaign.summary,
                                                "acks": {"sent": 985, "failed": 5}})
    payload = event_payload("campaign.reported", at=T0, campaign=store.campaign(campaign.id),
                            data={})
    body = body_of(payload, Settings().tz)
    delivery = body.split("Delivery (provider's report):\n", 1)[1].split("\n\n", 1)[0]
    assert figures(delivery) == {"sent": 985, "failed": 5}
    assert delivery.index("sent") < delivery.index("failed")  # the most first
    assert "Send time:   2026-11-23 10:00 Europe/Paris" in body


def test_the_reported_mail_names_the_results_file(store: Store) -> None:
    campaign = held_campaign(store)
    payload = event_payload("campaign.reported", at=T0, campaign=campaign, data={
        "results_file": "/var/lib/sftpd-agent/archive/x/promo.results.csv",
        "results": "3 rows: sent 2, failed 1"})
    body = body_of(payload, Settings().tz)
    assert ("Results:     /var/lib/sftpd-agent/archive/x/promo.results.csv  (one row per "
            "contact, for the CRM)") in body
    assert "  results: 3 rows: sent 2, failed 1" in body
    assert body.count("promo.results.csv") == 1


# -- e-mail over a real SMTP server --------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_held_mail_over_starttls_with_auth_carries_the_figures(
    tmp_path: Path, tls: Tls, mailbox: Mailbox, smtp_port: int, store: Store,
    clock: ManualClock, mechanism: str,
) -> None:
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    controller = start_smtp(tls, mailbox, smtp_port, exclude=(other,))
    try:
        settings = make_settings(tmp_path, email=email_settings(smtp_port))
        notifications = Notifications(store, Config(settings), clock, tls_context=tls.client)
        assert notifications.enqueue("campaign.held", held_payload(held_campaign(store))) == 1
        assert notifications.pending() == 1
        assert await send(notifications) == 1
    finally:
        controller.stop()
    assert mailbox.mechanisms == [mechanism]
    (mail,) = mailbox.messages
    assert mail["Subject"] == "[sftpd-agent] campaign promo held: 12 of 100 rows invalid (12.0%)"
    assert mail["To"] == "ops@example.net" and mail["From"] == "sftpd-agent@example.net"
    assert mail["Date"] and mail["Message-ID"].endswith("@example.net>")
    body = mail.get_content()
    for expected in ("Campaign:    promo", "held: it will NOT be sent",
                     "Reason:      12 of 100 rows invalid (12.0%), more than",
                     "Held file:   /var/lib/sftpd-agent/failed/promo.csv",
                     "Errors:      /var/lib/sftpd-agent/failed/promo.csv.errors.csv",
                     "Send time:   2026-11-23 10:00 Europe/Paris",
                     "Provider files: SEND-12345-20261123-1000-promo.csv",
                     "12 (12.0%)", "ê x4"):
        assert expected in body, expected
    assert figures(body) == {"rows": 100, "valid": 88, "invalid": 12, "msisdn": 9,
                             "msg_too_long": 3, "duplicates": 2, "suppressed": 0,
                             "segments": 91}
    assert "+33612345678" not in body  # the examples' raw values stay out
    assert notifications.pending() == 0
    assert rows(store)[0]["sent_at"] == "2026-11-23T08:00:00+00:00"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_implicit_tls(tmp_path: Path, tls: Tls, mailbox: Mailbox, smtp_port: int,
                            store: Store, clock: ManualClock) -> None:
    controller = start_smtp(tls, mailbox, smtp_port, implicit=True)
    try:
        settings = make_settings(tmp_path, email=email_settings(smtp_port, tls=True))
        notifications = Notifications(store, Config(settings), clock, tls_context=tls.client)
        notifications.enqueue("remote.unreachable", event_payload(
            "remote.unreachable", at=T0, campaign=None,
            data={"reason": "authentication refused", "permanent": True}))
        assert await send(notifications) == 1
    finally:
        controller.stop()
    (mail,) = mailbox.messages
    assert mail["Subject"] == "[sftpd-agent] SFTP server unreachable: authentication refused"
    assert "a person must act" in mail.get_content()


async def test_an_untrusted_certificate_is_a_failure_not_a_send(
    tmp_path: Path, smtp: Controller, mailbox: Mailbox, smtp_port: int, store: Store,
    clock: ManualClock,
) -> None:
    settings = make_settings(tmp_path, email=email_settings(smtp_port))
    notifications = Notifications(store, Config(settings), clock)  # system CAs only
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    assert await send(notifications) == 0
    assert mailbox.messages == [] and notifications.pending() == 1
    assert "CERTIFICATE_VERIFY_FAILED" in rows(store)[0]["last_error"]
