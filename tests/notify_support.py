"""What the notification tests share: a real SMTP server (aiosmtpd, STARTTLS/TLS, AUTH) with
its TLS material, settings, a store, a ManualClock, log capture, and a hook script.

Test modules take the fixtures by name: ``clock, store = support.clock, support.store``.
Time is a ManualClock: a retry is made due by moving the clock past the backoff, never by
sleeping. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import json
import re
import socket
import ssl
import sys
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
from sftpd_agent.notify.payload import event_payload
from sftpd_agent.notify.queue import (
    Notifications,
)
from sftpd_agent.rules.states import CampaignState
from sftpd_agent.store.journal import Store
from sftpd_agent.store.notifications import NotificationRows
from sftpd_agent.store.records import Campaign
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
