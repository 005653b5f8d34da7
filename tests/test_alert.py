"""``sftpd-agent alert``: the e-mail systemd's OnFailure= sends when it gives up on the agent.

The command runs as a real process (``python -m sftpd_agent``), as sftpd-agent-alert@.service
runs it: configuration file, SMTP password from ``$CREDENTIALS_DIRECTORY``, systemd's
``MONITOR_*`` variables, against a real aiosmtpd on 127.0.0.1 (STARTTLS and AUTH, the test's
own certificate trusted through ``SSL_CERT_FILE``). ``journalctl`` is a stand-in script
first on ``PATH``: what the command does with its output (bounded, optional) is what is tested.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from sftpd_agent.config import EmailSettings
from sftpd_agent.notify.alert import (
    JOURNAL_LINE_CHARS,
    JOURNAL_LINES,
    JOURNAL_SECONDS,
    Journal,
    alert_email,
    journal_tail,
)
from tests import notify_support as support
from tests.notify_support import PASSWORD, USER, Mailbox, Tls, free_port, start_smtp

UNIT = "sftpd-agent.service"
WAIT = 60  # seconds: the bound on one run of the command

FAKE_JOURNALCTL = '''#!{python}
import json, os, sys, time
from pathlib import Path
here = Path(__file__).parent
with (here / "calls.jsonl").open("a") as out:
    out.write(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid(),
                          "env": dict(os.environ)}}) + "\\n")
mode = (here / "mode").read_text().strip() if (here / "mode").exists() else "ok"
if mode == "hang":
    time.sleep(60)
if mode == "fail":
    print("No journal files were found.", file=sys.stderr)
    sys.exit(1)
for number in range(1, 26):
    print(f"2026-11-23T08:00:{{number:02d}}+0100 host sftpd-agent[42]: line {{number}}")
print("2026-11-23T08:00:59+0100 host sftpd-agent[42]: " + "y" * 100_000)
'''


# The shared fixtures, by name (tests/notify_support.py).
tls = support.tls
mailbox = support.mailbox
smtp_port = support.smtp_port
smtp = support.smtp


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "journalctl"
    script.write_text(FAKE_JOURNALCTL.format(python=sys.executable), encoding="utf-8")
    script.chmod(0o755)
    return folder


def write_config(tmp_path: Path, port: int | None) -> Path:
    config = tmp_path / "agent.toml"
    text = f'[paths]\nroot = "{tmp_path / "state"}"\n'
    if port is not None:
        text += ("[notify.email]\n"
                 f'smtp_host = "127.0.0.1"\nsmtp_port = {port}\nusername = "{USER}"\n'
                 'sender = "sftpd-agent@example.net"\nto = ["ops@example.net"]\n'
                 "timeout_seconds = 5\n")
    config.write_text(text, encoding="utf-8")
    return config


def run_alert(
    tmp_path: Path, tls: Tls, fake_bin: Path, config: Path | None, *args: str,
    unit: str = UNIT, extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The command as the alert unit runs it: credentials directory, MONITOR_* variables."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(exist_ok=True)
    (credentials / "smtp_password").write_text(PASSWORD + "\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SFTPD_AGENT_", "MONITOR_"))}
    env.update(PATH=f"{fake_bin}{os.pathsep}{env.get('PATH', os.defpath)}",
               SSL_CERT_FILE=str(tls.cert_file), CREDENTIALS_DIRECTORY=str(credentials),
               MONITOR_SERVICE_RESULT="exit-code", MONITOR_EXIT_CODE="exited",
               MONITOR_EXIT_STATUS="1", MONITOR_INVOCATION_ID="0123456789abcdef",
               **(extra_env or {}))
    argv = [sys.executable, "-m", "sftpd_agent", "alert", f"--unit={unit}", *args]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=WAIT,
                          check=False)


def calls(fake_bin: Path) -> list[dict[str, object]]:
    record = fake_bin / "calls.jsonl"
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]


# -- the command, end to end ---------------------------------------------------------------


def test_the_alert_is_mailed_with_the_last_journal_lines(
    tmp_path: Path, tls: Tls, smtp: Controller, mailbox: Mailbox, smtp_port: int,
    fake_bin: Path,
) -> None:
    result = run_alert(tmp_path, tls, fake_bin, write_config(tmp_path, smtp_port))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"alert for {UNIT} sent to ops@example.net"
    assert mailbox.mechanisms  # logged in over STARTTLS with the credential's password
    (message,) = mailbox.messages
    assert UNIT in message["Subject"] and "systemd is not restarting it" in message["Subject"]
    assert message["To"] == "ops@example.net" and message["Auto-Submitted"] == "auto-generated"
    body = message.get_content()
    assert "Result:      exit-code" in body and "Status:      1" in body
    assert "Invocation:  0123456789abcdef" in body
    shown = [line.strip() for line in body.splitlines() if " sftpd-agent[42]: " in line]
    assert len(shown) == JOURNAL_LINES  # the last 20 of 26
    assert shown[0].endswith("line 7") and shown[-2].endswith("line 25")
    assert shown[-1].endswith("...") and len(shown[-1]) == JOURNAL_LINE_CHARS  # 100 kB, cut
    assert f"systemctl reset-failed {UNIT}" in body
    # journalctl asked for exactly this unit's last lines, and saw none of the agent's secrets.
    (call,) = calls(fake_bin)
    assert call["argv"] == [f"--unit={UNIT}", f"--lines={JOURNAL_LINES}", "--no-pager",
                            "--quiet", "--output=short-iso"]
    env = call["env"]
    assert isinstance(env, dict)
    assert "CREDENTIALS_DIRECTORY" not in env and "SSL_CERT_FILE" not in env
    for raw in mailbox.raw:
        assert PASSWORD.encode() not in raw


def test_smtp_unreachable_exits_1_with_one_line(
    tmp_path: Path, tls: Tls, fake_bin: Path,
) -> None:
    started = time.monotonic()
    result = run_alert(tmp_path, tls, fake_bin, write_config(tmp_path, free_port()))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("sftpd-agent: alert not sent: ") and "127.0.0.1" in line
    assert result.stdout == ""
    assert time.monotonic() - started < WAIT


def test_a_refused_login_exits_1_and_the_echoed_password_is_hidden(
    tmp_path: Path, tls: Tls, mailbox: Mailbox, smtp_port: int, fake_bin: Path,
) -> None:
    mailbox.reject_auth_with = "bad credentials, you sent"
    controller = start_smtp(tls, mailbox, smtp_port)
    try:
        result = run_alert(tmp_path, tls, fake_bin, write_config(tmp_path, smtp_port))
    finally:
        controller.stop()
    assert result.returncode == 1
    assert mailbox.messages == [] and mailbox.mechanisms
    assert "bad credentials" in result.stderr and "***" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_no_email_configured_exits_2_with_one_line(
    tmp_path: Path, tls: Tls, fake_bin: Path,
) -> None:
    result = run_alert(tmp_path, tls, fake_bin, write_config(tmp_path, None))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "[notify.email]" in line
    assert calls(fake_bin) == []  # nothing to send: the journal is not even read


@pytest.mark.parametrize(
    ("args", "unit", "complaint"),
    [
        ((), "sftpd-agent.service; rm -rf /", "is not a unit name"),
        ((), "--all", "is not a unit name"),
        (("--config", "/nonexistent/agent.toml"), UNIT, "not found"),
    ],
    ids=["shell", "option", "no-config"],
)
def test_bad_input_exits_2(
    tmp_path: Path, tls: Tls, fake_bin: Path, args: tuple[str, ...], unit: str,
    complaint: str,
) -> None:
    config = None if args else write_config(tmp_path, free_port())
    result = run_alert(tmp_path, tls, fake_bin, config, *args, unit=unit)
    assert result.returncode == 2
    assert complaint in result.stderr and len(result.stderr.splitlines()) == 1
    assert calls(fake_bin) == []


def test_a_hanging_journal_delays_the_mail_by_its_timeout_only(
    tmp_path: Path, tls: Tls, smtp: Controller, mailbox: Mailbox, smtp_port: int,
    fake_bin: Path,
) -> None:
    (fake_bin / "mode").write_text("hang")
    started = time.monotonic()
    result = run_alert(tmp_path, tls, fake_bin, write_config(tmp_path, smtp_port))
    assert result.returncode == 0, result.stderr
    assert JOURNAL_SECONDS <= time.monotonic() - started < JOURNAL_SECONDS + 20
    (message,) = mailbox.messages
    assert f"longer than {JOURNAL_SECONDS:g} s" in message.get_content()
    (call,) = calls(fake_bin)
    assert not Path(f"/proc/{call['pid']}").exists() or "Z" in Path(
        f"/proc/{call['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]


# -- the journal's tail and the message (in-process) ----------------------------------------


async def test_a_failing_journal_is_a_note(fake_bin: Path) -> None:
    (fake_bin / "mode").write_text("fail")
    journal = await journal_tail(UNIT, {"PATH": str(fake_bin)})
    assert journal.lines == []
    assert journal.note == "journalctl failed (exit status 1): No journal files were found."


async def test_no_journalctl_is_a_note(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert await journal_tail(UNIT, {"PATH": str(empty)}) == Journal(
        [], "journalctl was not found")


def test_the_message_says_what_to_do_without_monitor_variables() -> None:
    email = EmailSettings(to=("ops@example.net", "oncall@example.net"),
                          sender="agent@example.net")
    at = datetime.datetime(2026, 11, 23, 7, 0, tzinfo=datetime.UTC)
    message = alert_email(UNIT, email, host="gw1", at=at, tz=datetime.UTC,
                          journal=Journal([], "journalctl was not found"), monitor={})
    assert message["Subject"] == (
        f"[sftpd-agent] {UNIT} on gw1 has stopped: systemd is not restarting it")
    assert message["To"] == "ops@example.net, oncall@example.net"
    body = message.get_content()
    assert "Result:" not in body and "Journal: journalctl was not found." in body
    assert "Stopped:     2026-11-23 07:00 UTC" in body
    assert message["Message-ID"].endswith("@example.net>")
