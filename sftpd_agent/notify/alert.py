"""``sftpd-agent alert``: the e-mail that says systemd stopped restarting the agent.

The systemd unit's ``OnFailure=`` runs it; it is sent at once, outside the notification queue
(the agent is not running): the unit's last journal lines (``journalctl``, bounded in time and
size; any failure is a note in the mail), what systemd says of the failure, what to do.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import socket
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import NamedTuple

from ..config import EmailSettings, Settings
from ..rules.display import one_line
from .email import local_time, smtp_send
from .hooks import allowed_environment, run_hook
from .payload import ERROR_CHARS, scrub

UNIT_NAME = re.compile(r"[A-Za-z0-9:_.@\\][A-Za-z0-9:_.@\\-]{0,255}")  # \\: systemd escapes
JOURNAL_LINES = 20
JOURNAL_BYTES = 1 << 20  # of journalctl's output: 20 lines of journald's LineMax= (48K)
JOURNAL_SECONDS = 5.0
JOURNAL_LINE_CHARS = 300
# What systemd (>= 251) tells an OnFailure= unit about the unit that failed.
_MONITOR = (("MONITOR_SERVICE_RESULT", "Result"), ("MONITOR_EXIT_CODE", "Exit"),
            ("MONITOR_EXIT_STATUS", "Status"), ("MONITOR_INVOCATION_ID", "Invocation"))


class Journal(NamedTuple):
    """The last lines of a unit's journal, or why there are none (``note``)."""

    lines: list[str]
    note: str = ""


async def journal_tail(unit: str, environ: Mapping[str, str] | None = None) -> Journal:
    """``journalctl -u UNIT -n 20``, bounded in time and size; any failure is a note."""
    env = allowed_environment(os.environ if environ is None else environ)
    env.update(SYSTEMD_COLORS="0", SYSTEMD_PAGER="", SYSTEMD_LESS="")
    program = shutil.which("journalctl", path=env.get("PATH", os.defpath))
    if program is None:
        return Journal([], "journalctl was not found")
    argv = [program, f"--unit={unit}", f"--lines={JOURNAL_LINES}", "--no-pager", "--quiet",
            "--output=short-iso"]
    try:
        ran = await run_hook(argv, b"", env=env, seconds=JOURNAL_SECONDS,
                             tail_bytes=JOURNAL_BYTES)
    except OSError as exc:
        return Journal([], one_line(f"journalctl could not start: {exc}", ERROR_CHARS))
    lines = [one_line(line, JOURNAL_LINE_CHARS) for line in ran.stdout.splitlines()
             if line.strip()][-JOURNAL_LINES:]
    if ran.timed_out:
        return Journal(lines, f"journalctl took longer than {JOURNAL_SECONDS:g} s")
    if ran.returncode != 0:
        return Journal(lines, one_line(f"journalctl failed (exit status {ran.returncode}): "
                                        f"{ran.last_line()}", ERROR_CHARS))
    if not lines:
        return Journal([], "no journal lines could be read (the alert unit reads the journal "
                           "through the systemd-journal group)")
    return Journal(lines)


def alert_email(
    unit: str, email: EmailSettings, *, host: str, at: datetime.datetime,
    tz: datetime.tzinfo, journal: Journal, monitor: Mapping[str, str],
) -> EmailMessage:
    """The e-mail that says systemd stopped restarting ``unit`` (pure)."""
    where = f" on {host}" if host else ""
    message = EmailMessage()
    message["Subject"] = one_line(
        f"[sftpd-agent] {unit}{where} has stopped: systemd is not restarting it", 200)
    message["From"] = email.sender
    message["To"] = ", ".join(email.to)
    message["Date"] = format_datetime(at)
    message["Message-ID"] = make_msgid("sftpd-agent.alert",
                                       email.sender.rpartition("@")[2] or "localhost")
    message["Auto-Submitted"] = "auto-generated"
    message["X-Sftpd-Agent-Event"] = "agent.failed"
    lines = [f"{unit}{where} failed and systemd gave up restarting it (it failed too often in",
             "a row: StartLimitBurst= within StartLimitIntervalSec=). Nothing is uploaded and no",
             "report is read until a person starts it again. Campaigns already dropped are kept.",
             ""]
    lines += [f"{label + ':':<12} {one_line(monitor[key], 200)}" for key, label in _MONITOR
              if monitor.get(key)]
    lines += [f"{'Stopped:':<12} {local_time(at.isoformat(), tz)}", ""]
    command = f"journalctl -u {unit} -n {JOURNAL_LINES}"
    if journal.lines:
        lines += [f"The last lines of its journal ({command}):", ""]
        lines += [f"  {line}" for line in journal.lines]
    if journal.note:
        lines += ["", f"Journal: {journal.note}."]
    lines += ["", "What to do:",
              f"  journalctl -u {unit} -e      the whole story: the error that repeats",
              "  sftpd-agent status             the campaigns and the agent's last state",
              f"  systemctl reset-failed {unit} && systemctl start {unit}",
              "                                 once the cause is fixed",
              "", "--", f"sftpd-agent alert{where}"]
    message.set_content("\n".join(lines) + "\n")
    return message


async def send_alert(
    settings: Settings, unit: str, *, tls_context: ssl.SSLContext | None = None,
    environ: Mapping[str, str] | None = None, now: datetime.datetime | None = None,
) -> str | None:
    """E-mail that ``unit`` failed for good; None when sent, else the error on one line
    (no secret in it). ``[notify.email]`` must be configured with recipients."""
    email = settings.notify.email
    if email is None or not email.to:
        raise ValueError("no [notify.email] recipients")
    source = os.environ if environ is None else environ
    journal = await journal_tail(unit, source)
    message = alert_email(unit, email, host=socket.gethostname(),
                          at=now or datetime.datetime.now(datetime.UTC), tz=settings.tz,
                          journal=journal, monitor=source)
    try:
        await smtp_send(message, email, tls_context=tls_context)
    except Exception as exc:
        return scrub(f"{type(exc).__name__}: {exc}", settings)
    return None

