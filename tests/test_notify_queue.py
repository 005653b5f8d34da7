"""notify/queue.py and store/notifications.py: routing to channels, the backoff, the durable
queue (down then up, a restart, a reload, a day of failures) and the sender task; no
secret in any log line, mail or hook environment."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import os
import random
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from sftpd_agent.notify.payload import event_payload
from sftpd_agent.notify.queue import (
    Notifications,
    channels_for,
    hook_channel,
    queue_status,
    retry_delay,
)
from sftpd_agent.store.journal import Store
from sftpd_agent.store.notifications import NotificationRows
from tests import notify_support as support
from tests.notify_support import (
    PASSPHRASE,
    PASSWORD,
    T0,
    Config,
    Mailbox,
    Tls,
    email_settings,
    free_port,
    held_campaign,
    held_payload,
    hook_argv,
    log_lines,
    make_settings,
    read_records,
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
logs = support.logs


def test_channels_follow_each_filter(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, email=email_settings(25, events=["campaign.held"]),
        hooks=[{"events": ["campaign.held", "campaign.done"], "command": ["/bin/true"]},
               {"events": ["campaign.done"], "command": ["/bin/true", "x y"]}])
    assert channels_for("campaign.held", settings.notify) == ["email", 'hook:["/bin/true"]']
    assert channels_for("campaign.done", settings.notify) == [
        hook_channel(["/bin/true"]), hook_channel(["/bin/true", "x y"])]
    assert channels_for("remote.recovered", settings.notify) == []


def test_retry_delay_doubles_from_30_seconds_to_an_hour_with_jitter() -> None:
    rng = random.Random(7)
    for attempts, raw in ((1, 30), (2, 60), (5, 480), (8, 3600), (40, 3600)):
        delays = [retry_delay(attempts, rng) for _ in range(50)]
        assert all(raw / 2 <= d <= raw for d in delays)


# -- the queue and its sender ----------------------------------------------------------


async def test_smtp_down_then_up_the_mail_arrives_exactly_once(
    tmp_path: Path, tls: Tls, mailbox: Mailbox, smtp_port: int, store: Store,
    clock: ManualClock, logs: io.StringIO,
) -> None:
    settings = make_settings(tmp_path, email=email_settings(smtp_port))
    notifications = Notifications(store, Config(settings), clock, tls_context=tls.client)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    notifications.enqueue("campaign.done", event_payload(
        "campaign.done", at=T0, campaign=store.campaign(1), data={}))

    assert await send(notifications) == 0  # nobody listens
    first, second = rows(store)
    assert first["attempts"] == 1 and first["sent_at"] is None and first["last_error"]
    assert second["attempts"] == 0 and second["next_at"] == first["next_at"]  # waits behind
    next_at = datetime.datetime.fromisoformat(first["next_at"])
    assert 15 <= (next_at - T0).total_seconds() <= 30
    assert await send(notifications) == 0  # not due yet: nothing attempted
    assert rows(store)[0]["attempts"] == 1
    (failed,) = [line for line in log_lines(logs) if line["event"] == "notification_failed"]
    assert failed["level"] == "warning" and failed["channel"] == "email"
    assert failed["attempt"] == 1 and failed["name"] == "campaign.held"

    controller = start_smtp(tls, mailbox, smtp_port)
    try:
        clock.advance(31)
        assert await send(notifications) == 2
        clock.advance(7200)
        assert await send(notifications) == 0
    finally:
        controller.stop()
    assert [m["Subject"] for m in mailbox.messages] == [
        "[sftpd-agent] campaign promo held: 12 of 100 rows invalid (12.0%)",
        "[sftpd-agent] campaign promo done"]
    assert notifications.pending() == 0 and rows(store)[0]["attempts"] == 2


async def test_no_secret_in_logs_mails_or_hook_environment(
    tmp_path: Path, tls: Tls, mailbox: Mailbox, smtp_port: int, store: Store,
    clock: ManualClock, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SFTPD_AGENT_NOTIFY__EMAIL__PASSWORD", PASSWORD)
    monkeypatch.setenv("SFTPD_AGENT_REMOTE__PRIVATE_KEY_PASSPHRASE", PASSPHRASE)
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, "ok")}
    settings = make_settings(tmp_path, email=email_settings(smtp_port), hooks=[hook])
    notifications = Notifications(store, Config(settings), clock, tls_context=tls.client)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    mailbox.reject_auth_with = "bad credentials, you sent"  # a server that echoes the password
    controller = start_smtp(tls, mailbox, smtp_port)
    try:
        assert await send(notifications) == 1  # the hook
        assert mailbox.messages == [] and mailbox.mechanisms  # AUTH was tried and refused
        error = rows(store)[0]["last_error"]
        assert "bad credentials" in error and "***" in error
        mailbox.reject_auth_with = None
        clock.advance(31)
        assert await send(notifications) == 1
    finally:
        controller.stop()
    assert len(mailbox.messages) == 1
    (called,) = read_records(record)
    stored = json.dumps(rows(store))
    everything = [logs.getvalue(), stored, json.dumps(called),
                  *(raw.decode(errors="replace") for raw in mailbox.raw)]
    for text in everything:
        assert PASSWORD not in text and PASSPHRASE not in text
    assert "SFTPD_AGENT_NOTIFY__EMAIL__PASSWORD" not in called["env"]
    assert any(line["event"] == "notification_failed" for line in log_lines(logs))


async def test_run_sends_when_woken_and_stops(
    tmp_path: Path, smtp: Controller, tls: Tls, mailbox: Mailbox, smtp_port: int,
    store: Store, clock: ManualClock,
) -> None:
    settings = make_settings(tmp_path, email=email_settings(smtp_port))
    notifications = Notifications(store, Config(settings), clock, tls_context=tls.client)
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(notifications.run(stop, wake))
    await asyncio.sleep(0.1)
    notifications.enqueue("campaign.done", event_payload(
        "campaign.done", at=T0, campaign=held_campaign(store), data={}))
    wake.set()
    for _ in range(100):
        if mailbox.messages:
            break
        await asyncio.sleep(0.05)
    assert [m["Subject"] for m in mailbox.messages] == ["[sftpd-agent] campaign promo done"]
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_queued_notifications_survive_a_restart(
    tmp_path: Path, clock: ManualClock,
) -> None:
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.done"], "command": hook_argv(tmp_path, record, "ok")}
    config = Config(make_settings(tmp_path, hooks=[hook]))
    first = Store(tmp_path / "state.db")
    campaign = held_campaign(first)
    assert Notifications(first, config, clock).enqueue("campaign.done", event_payload(
        "campaign.done", at=T0, campaign=campaign, data={})) == 1
    first.close()

    second = Store(tmp_path / "state.db")
    try:
        notifications = Notifications(second, config, clock)
        assert notifications.pending() == 1
        assert await send(notifications) == 1
        assert notifications.pending() == 0
    finally:
        second.close()
    (entry,) = read_records(record)
    assert json.loads(entry["stdin"])["event"] == "campaign.done"


async def test_a_channel_removed_by_a_reload_is_dropped_not_retried(
    tmp_path: Path, store: Store, clock: ManualClock, logs: io.StringIO,
) -> None:
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, "ok")}
    config = Config(make_settings(tmp_path, email=email_settings(free_port()), hooks=[hook]))
    notifications = Notifications(store, config, clock)
    assert notifications.enqueue("campaign.held", held_payload(held_campaign(store))) == 2
    config.value = make_settings(tmp_path)  # SIGHUP: no e-mail, no hook any more
    assert await send(notifications) == 0
    assert notifications.pending() == 0
    assert [r["last_error"] for r in rows(store)] == ["channel removed"] * 2
    assert read_records(record) == []
    dropped = [line for line in log_lines(logs) if line["event"] == "notification_dropped"]
    assert len(dropped) == 2


async def test_a_day_of_failures_is_logged_stale_once_and_still_retried(
    tmp_path: Path, store: Store, clock: ManualClock, logs: io.StringIO,
) -> None:
    hook = {"events": ["campaign.held"], "command": [str(tmp_path / "missing-program")]}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    for _ in range(3):
        clock.advance(25 * 3600)
        assert await send(notifications) == 0
    (row,) = rows(store)
    assert row["attempts"] == 3 and row["sent_at"] is None
    assert "missing-program" in row["last_error"]
    stale = [line for line in log_lines(logs) if line["event"] == "notification_stale"]
    assert len(stale) == 1 and stale[0]["attempts"] == 1
    assert (datetime.datetime.fromisoformat(row["next_at"]) - clock()).total_seconds() <= 3600


def test_enqueue_without_a_matching_channel_adds_nothing(
    tmp_path: Path, store: Store, clock: ManualClock,
) -> None:
    settings = make_settings(tmp_path, email=email_settings(25, events=["campaign.held"]))
    notifications = Notifications(store, Config(settings), clock)
    assert notifications.enqueue("campaign.done", {"event": "campaign.done"}) == 0
    assert notifications.pending() == 0 and os.environ.get("SFTPD_EVENT") is None


def test_the_rows_keep_queue_order_due_times_and_figures(tmp_path: Path, store: Store) -> None:
    table = NotificationRows(store)
    table.add("campaign.held", ["email", 'hook:["/bin/true"]'], '{"event": "campaign.held"}', T0)
    table.add("campaign.done", ["email"], '{"event": "campaign.done"}', T0)
    first, second, third = table.due(T0, 10)
    assert [r.channel for r in (first, second, third)] == ["email", 'hook:["/bin/true"]', "email"]
    assert table.due(T0, 2) == [first, second]
    assert table.due(T0 - datetime.timedelta(seconds=1), 10) == []  # not due yet
    assert first.payload == {"event": "campaign.held"} and first.attempts == 0

    later = T0 + datetime.timedelta(minutes=5)
    table.failed(first.id, attempts=1, error="SMTPConnectError: down", next_at=later)
    table.postpone([third.id], later)
    assert table.due(T0, 10) == [second]
    assert table.next_due() == T0
    table.sent(second.id, at=T0, attempts=1)
    assert table.next_due() == later
    assert [r.id for r in table.due(later, 10)] == [first.id, third.id]
    assert table.figures() == {"pending": 2, "failing": 1, "oldest": T0.isoformat(),
                               "last_error": "SMTPConnectError: down"}

    table.dropped(third.id, at=later, reason="channel removed")
    reader = Store(tmp_path / "state.db", readonly=True)  # as status reads beside the daemon
    try:
        assert queue_status(reader) == {"pending": 1, "failing": 1, "oldest": T0.isoformat(),
                                        "last_error": "SMTPConnectError: down"}
        assert NotificationRows(reader).next_due() == later
    finally:
        reader.close()
    assert [(r["attempts"], r["last_error"], r["sent_at"] is not None) for r in table.all()] == [
        (1, "SMTPConnectError: down", False), (1, None, True), (0, "channel removed", True)]
