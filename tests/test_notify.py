"""Notifications: a real SMTP server (aiosmtpd, STARTTLS/TLS, AUTH), real hook processes.

Time is a ManualClock: a retry is made due by moving the clock past the backoff, never by
sleeping. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import json
import os
import random
import re
import resource
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sftpd_agent.config import Settings
from sftpd_agent.logs import configure
from sftpd_agent.notify.email import body_of, subject_of
from sftpd_agent.notify.hooks import HOOK_ENV_KEYS, HOOK_TAIL_BYTES, _Tail, hook_environment
from sftpd_agent.notify.payload import event_payload
from sftpd_agent.notify.queue import (
    Notifications,
    channels_for,
    hook_channel,
    queue_status,
    retry_delay,
)
from sftpd_agent.rules.masking import mask
from sftpd_agent.rules.states import CampaignState
from sftpd_agent.store.journal import Campaign, Store
from sftpd_agent.store.notifications import NotificationRows
from tests.servers import ManualClock

PASSWORD = "Pw-s3cret-7f2a"  # the SMTP password: must never appear in a log, mail or hook
PASSPHRASE = "pass-phrase-91c"  # the key passphrase: same
USER = "agent"
PARIS = datetime.timezone(datetime.timedelta(hours=1))
T0 = datetime.datetime(2026, 11, 23, 8, 0, tzinfo=datetime.UTC)
WAIT = 15.0  # seconds: the bound on any single send pass


# -- fixtures: TLS material, an SMTP server, settings, a store ---------------------------


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext
    cert_file: Path  # what a client process trusts (SSL_CERT_FILE)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


def make_tls(folder: Path) -> Tls:
    """A self-signed certificate for 127.0.0.1, made now; the client trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sftpd-agent test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return Tls(server=server, client=ssl.create_default_context(cafile=str(cert_file)),
               cert_file=cert_file)


@dataclass
class Mailbox:
    """The aiosmtpd handler: every accepted message, and the AUTH mechanisms used."""

    messages: list[EmailMessage] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    mechanisms: list[str] = field(default_factory=list)
    reject_auth_with: str | None = None  # a 535 text that echoes what it got

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.content)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.mechanisms.append(mechanism)
        if self.reject_auth_with is not None:
            return AuthResult(success=False, handled=False,
                              message=f"535 {self.reject_auth_with} {data.password.decode()}")
        ok = data.login == USER.encode() and data.password == PASSWORD.encode()
        return AuthResult(success=ok)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp(tls: Tls, mailbox: Mailbox, smtp_port: int) -> Iterator[Controller]:
    """STARTTLS required, AUTH required (after TLS), on 127.0.0.1."""
    controller = start_smtp(tls, mailbox, smtp_port)
    yield controller
    controller.stop()


def start_smtp(tls: Tls, mailbox: Mailbox, port: int, *, implicit: bool = False,
               exclude: tuple[str, ...] = ()) -> Controller:
    options: dict[str, Any] = {"authenticator": mailbox.authenticate, "auth_required": True,
                               "auth_exclude_mechanism": list(exclude)}
    if implicit:
        options["ssl_context"] = tls.server
        options["auth_require_tls"] = False  # the connection is TLS from the first byte
    else:
        options.update(tls_context=tls.server, require_starttls=True)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=5,
                            **options)
    controller.start()
    return controller


def email_settings(port: int, **overrides: Any) -> dict[str, Any]:
    return {"smtp_host": "127.0.0.1", "smtp_port": port, "starttls": True, "username": USER,
            "password": PASSWORD, "sender": "sftpd-agent@example.net",
            "to": ["ops@example.net"], "timeout_seconds": 5, **overrides}


def make_settings(tmp_path: Path, *, email: dict[str, Any] | None = None,
                  hooks: list[dict[str, Any]] | None = None) -> Settings:
    return Settings(paths={"root": str(tmp_path)},
                    remote={"private_key_passphrase": PASSPHRASE},
                    notify={"email": email, "hooks": hooks or []})


class Config:
    """A settings callable whose value a test can swap, as SIGHUP does."""

    def __init__(self, settings: Settings) -> None:
        self.value = settings

    def __call__(self) -> Settings:
        return self.value


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "state.db")
    yield opened
    opened.close()


@pytest.fixture
def logs() -> io.StringIO:
    stream = io.StringIO()
    configure(stream=stream, json=True, level="INFO")
    return stream


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def held_campaign(store: Store, campaign_id: str = "promo") -> Campaign:
    created = store.add_campaign(campaign_id=campaign_id, file=f"{campaign_id}.csv",
                                 source=f"1-{campaign_id}.csv", at=T0)
    return store.move(
        created.id, CampaignState.HELD, at=T0, rows=100, valid=88, invalid=12, duplicates=2,
        segments=91, send_at=datetime.datetime(2026, 11, 23, 9, 0, tzinfo=datetime.UTC),
        reason="12 of 100 rows invalid (12.0%), more than max_invalid_percent = 5",
        summary={"invalid_by_code": {"msisdn": 9, "msg_too_long": 3},
                 "transliterated": {"ê": 4},
                 "examples": {"msisdn": [{"line": 3, "value": "+33612345678"}]},
                 "remote_names": ["SEND-12345-20261123-1000-promo.csv"]})


def held_payload(campaign: Campaign) -> dict[str, Any]:
    return event_payload("campaign.held", at=T0, campaign=campaign, data={
        "reason": campaign.reason, "file": "/var/lib/sftpd-agent/failed/promo.csv"})


async def send(notifications: Notifications) -> int:
    return await asyncio.wait_for(notifications.send_due(), timeout=WAIT)


def figures(body: str) -> dict[str, int]:
    """The ``label   number`` lines of an e-mail body."""
    found = (re.fullmatch(r"\s+(\w+)\s+(\d+)(?: \(.*\))?", line) for line in body.splitlines())
    return {match[1]: int(match[2]) for match in found if match}


def rows(store: Store) -> list[dict[str, Any]]:
    return NotificationRows(store).all()


# -- the payload and the words (pure) ------------------------------------------------------


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


# -- hooks: real processes -----------------------------------------------------------------

HOOK = '''
import json, os, pathlib, subprocess, sys, time
record, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
entry = {"argv": sys.argv, "stdin": sys.stdin.read(), "pid": os.getpid(),
         "env": dict(os.environ)}
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
if mode in ("hang", "leave-child"):
    child = subprocess.Popen(SLEEPER)  # inherits stdout and stderr: holds the pipes open
    entry["child"] = child.pid
if mode == "hang-deep":
    # A child that starts a grandchild and exits: the grandchild is re-parented, but stays
    # in the hook's process group.
    middle = subprocess.run([sys.executable, "-c", "import subprocess, sys; "
                             "print(subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL).pid)",
                             *SLEEPER],
                            stdout=subprocess.PIPE, text=True, check=True)
    entry["child"] = int(middle.stdout)
with record.open("a") as out:
    out.write(json.dumps(entry) + "\\n")
if mode in ("hang", "hang-deep"):
    time.sleep(60)
if mode == "flood":
    block = b"x" * 1023 + b"\\n"
    for _ in range(int(sys.argv[3]) * 1024):
        sys.stdout.buffer.write(block)
        sys.stderr.buffer.write(block)
    sys.stdout.buffer.write(b"the last stdout line\\n")
    sys.stdout.flush()
    sys.stderr.buffer.write(b"the last words, about +33612345678\\n")
    sys.exit(4)
if mode == "fail-on-held" and json.loads(entry["stdin"])["event"] == "campaign.held":
    sys.exit(3)
if mode == "fail-until-flag" and not (record.parent / "flag").exists():
    print("it broke for +33612345678", file=sys.stderr)
    sys.exit(3)
'''


def hook_argv(tmp_path: Path, record: Path, mode: str, *extra: str) -> list[str]:
    script = tmp_path / "hook.py"
    script.write_text(HOOK, encoding="utf-8")
    return [sys.executable, str(script), str(record), mode, *extra]


def read_records(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def test_a_failing_hook_is_retried_until_it_works(
    tmp_path: Path, store: Store, clock: ManualClock, logs: io.StringIO,
) -> None:
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, "fail-until-flag")}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))

    assert await send(notifications) == 0
    (row,) = rows(store)
    assert row["attempts"] == 1 and row["sent_at"] is None
    assert row["last_error"] == "exit status 3: it broke for +33612****78"
    (failed,) = [line for line in log_lines(logs) if line["event"] == "notification_failed"]
    assert failed["channel"] == f"hook:{sys.executable}" and failed["attempt"] == 1
    assert failed["campaign_id"] == "promo"

    clock.advance(31)
    assert await send(notifications) == 0  # still failing: retried, not dropped
    assert rows(store)[0]["attempts"] == 2
    assert queue_status(store) == {
        "pending": 1, "failing": 1, "oldest": "2026-11-23T08:00:00+00:00",
        "last_error": "exit status 3: it broke for +33612****78"}
    (tmp_path / "flag").touch()
    clock.advance(3600)
    assert await send(notifications) == 1
    assert len(read_records(record)) == 3
    assert rows(store)[0]["attempts"] == 3 and notifications.pending() == 0
    assert queue_status(store)["pending"] == queue_status(store)["failing"] == 0


async def test_one_failing_event_does_not_hold_back_the_next_ones(
    tmp_path: Path, store: Store, clock: ManualClock,
) -> None:
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held", "campaign.done"],
            "command": hook_argv(tmp_path, record, "fail-on-held")}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    campaign = held_campaign(store)
    notifications.enqueue("campaign.held", held_payload(campaign))
    notifications.enqueue("campaign.done", event_payload(
        "campaign.done", at=T0, campaign=campaign, data={}))
    assert await send(notifications) == 1
    held, done = rows(store)
    assert held["sent_at"] is None and held["attempts"] == 1
    assert done["sent_at"] is not None
    assert len(read_records(record)) == 2


@pytest.mark.parametrize("mode", ["hang", "hang-deep"])
async def test_a_hanging_hook_is_killed_with_its_children_and_retried(
    tmp_path: Path, store: Store, clock: ManualClock, mode: str,
) -> None:
    # "hang-deep": the hook's child started a grandchild and exited; the grandchild, orphaned
    # and re-parented, is still in the hook's process group and must die with it.
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, mode),
            "timeout_seconds": 1.5}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    started = time.monotonic()
    assert await send(notifications) == 0
    assert time.monotonic() - started < 10
    (entry,) = read_records(record)
    deadline = time.monotonic() + 5
    while (alive(entry["pid"]) or alive(entry["child"])) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not alive(entry["pid"]) and not alive(entry["child"])
    (row,) = rows(store)
    assert row["last_error"] == "timed out after 1.5 s, killed" and row["attempts"] == 1
    clock.advance(31)
    assert await send(notifications) == 0  # retried (and killed again)
    assert len(read_records(record)) == 2
    for entry in read_records(record):
        assert not alive(entry["pid"])
    last = read_records(record)[-1]
    deadline = time.monotonic() + 5
    while alive(last["child"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not alive(last["child"])


async def test_a_hook_that_exits_is_done_what_it_left_running_is_killed(
    tmp_path: Path, store: Store, clock: ManualClock,
) -> None:
    # The child holds the hook's stdout and stderr open: the send must not wait for it (nor
    # time out), and it must not stay behind, eating the unit's TasksMax= and MemoryMax=.
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, "leave-child"),
            "timeout_seconds": 20}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    started = time.monotonic()
    assert await send(notifications) == 1
    assert time.monotonic() - started < 10
    (entry,) = read_records(record)
    deadline = time.monotonic() + 5
    while alive(entry["child"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not alive(entry["child"])


def _peak_reset() -> bool:
    """Reset this process's peak RSS (VmHWM); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


async def test_a_hook_writing_100_mb_costs_no_memory_and_its_tail_is_the_detail(
    tmp_path: Path, store: Store, clock: ManualClock, logs: io.StringIO,
) -> None:
    record = tmp_path / "hook.jsonl"
    megabytes = 50  # on stdout, and as much on stderr
    hook = {"events": ["campaign.held"],
            "command": hook_argv(tmp_path, record, "flood", str(megabytes)),
            "timeout_seconds": 60}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    reset = _peak_reset()
    before = _status_kib("VmRSS")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    assert await asyncio.wait_for(notifications.send_due(), timeout=60) == 0
    elapsed = time.monotonic() - started
    grown_kib = (_status_kib("VmHWM") - before if reset
                 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before)
    # Reading 2 x 50 MB into memory would grow the peak by 100 MB; the tails are 2 x 4 KiB.
    assert grown_kib < 20 * 1024, f"peak RSS grew by {grown_kib} KiB"
    (row,) = rows(store)
    assert row["last_error"] == "exit status 4: the last words, about +33612****78"
    (failed,) = [line for line in log_lines(logs) if line["event"] == "notification_failed"]
    assert failed["stderr"].endswith("x\nthe last words, about +33612****78")
    assert failed["stdout"].endswith("x\nthe last stdout line")
    for tail in (failed["stderr"], failed["stdout"]):
        assert tail.startswith("...x")  # the cut first line is marked, then whole lines
        assert len(tail.encode()) <= HOOK_TAIL_BYTES
    assert elapsed < 30


def test_a_tail_keeps_the_last_bytes_only() -> None:
    tail = _Tail(10)
    for chunk in (b"0123456789abc", b"", b"de", b"\nfg"):
        tail.add(chunk)
    assert bytes(tail.data) == b"89abcde\nfg" and tail.total == 18
    assert tail.text() == "...fg"  # the first, cut line goes
    whole = _Tail(10)
    whole.add(b"+33612345678")
    assert len(whole.data) == 10 and whole.text() == "...".rstrip(".") + "..."
    short = _Tail(100)
    short.add(b"call +33612345678 now\n")
    assert short.text() == "call +33612****78 now"


async def test_a_hook_sees_only_the_allow_listed_environment(
    tmp_path: Path, store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "smtp_password").write_text(PASSWORD)
    planted = {
        "CREDENTIALS_DIRECTORY": str(credentials), "SFTPD_AGENT_REMOTE__HOST": "sftp.example",
        "SFTPD_AGENT_CONFIG": "/etc/sftpd-agent/agent.toml", "NOTIFY_SOCKET": "/run/x",
        "WATCHDOG_USEC": "60000000", "INVOCATION_ID": "abc", "JOURNAL_STREAM": "8:1234",
        "MY_API_KEY": "k-123", "AWS_SECRET_ACCESS_KEY": "s-456", "LD_PRELOAD": "",
        "PYTHONPATH": str(tmp_path), "TZ": "Europe/Paris", "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8", "HOME": str(tmp_path),
    }
    for key, value in planted.items():
        monkeypatch.setenv(key, value)
    record = tmp_path / "hook.jsonl"
    hook = {"events": ["campaign.held"], "command": hook_argv(tmp_path, record, "ok")}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    notifications.enqueue("campaign.held", held_payload(held_campaign(store)))
    assert await send(notifications) == 1
    (entry,) = read_records(record)
    env = entry["env"]
    allowed = HOOK_ENV_KEYS | {"SFTPD_EVENT", "SFTPD_CAMPAIGN", "SFTPD_NOTIFICATION_ID"}
    extra = {key for key in env if key not in allowed and not key.startswith("LC_")}
    assert extra == set(), extra
    assert not any(key.startswith("SFTPD_AGENT") for key in env)
    assert "CREDENTIALS_DIRECTORY" not in env and str(credentials) not in json.dumps(env)
    assert env["TZ"] == "Europe/Paris" and env["LC_ALL"] == "C.UTF-8"
    assert env["HOME"] == str(tmp_path) and env["PATH"] == os.environ["PATH"]
    assert env["SFTPD_EVENT"] == "campaign.held" and env["SFTPD_CAMPAIGN"] == "promo"
    assert hook_environment("x", "", 1, {})["PATH"] == os.defpath  # never without a PATH


async def test_shell_syntax_reaches_the_hook_only_as_json(
    tmp_path: Path, store: Store, clock: ManualClock,
) -> None:
    pwned = tmp_path / "pwned"
    nasty = f"$(touch {pwned}); rm -rf {tmp_path}/nothing `touch {pwned}` \"' && |"
    record = tmp_path / "hook.jsonl"
    argv = hook_argv(tmp_path, record, "ok", "--label", "$HOME", "; echo hi")
    hook = {"events": ["campaign.held"], "command": argv}
    notifications = Notifications(store, Config(make_settings(tmp_path, hooks=[hook])), clock)
    campaign = held_campaign(store, campaign_id=nasty)
    payload = event_payload("campaign.held", at=T0, campaign=campaign,
                            data={"reason": nasty, "file": nasty})
    notifications.enqueue("campaign.held", payload)
    assert await send(notifications) == 1
    (entry,) = read_records(record)
    assert entry["argv"] == argv[1:]  # Python's sys.argv starts at the script
    assert entry["env"]["SFTPD_EVENT"] == "campaign.held"
    assert entry["env"]["SFTPD_CAMPAIGN"] == nasty
    assert entry["env"]["SFTPD_NOTIFICATION_ID"] == "1"
    received = json.loads(entry["stdin"])
    assert received == payload and received["campaign"]["campaign_id"] == nasty
    assert not pwned.exists()


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
