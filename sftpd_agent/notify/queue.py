"""Notifications: every event of the contract, e-mailed and passed to command hooks.

    emit -> event_payload() -> Notifications.enqueue()   one journal row per channel, durable
         -> Notifications.run()                           the sender task: send_due() in a loop

A row is a *channel* (``email``, or ``hook:<argv as JSON>``) and the event's JSON payload. It
stays in the journal (``notifications`` table) until it is sent: a failure is logged
(``notification_failed``) and retried with a backoff (30 s doubling to 1 h, jittered), for as
long as it takes; a row still failing after a day is logged ``notification_stale`` once. When
the channel itself is down (SMTP unreachable, a hook that hangs or cannot start) the rows behind
wait with it; a hook's non-zero exit fails that row only. Channels are sent in parallel, each in
queue order, every send under a timeout (a hook's whole process group is killed). A restart
sends what was left. Delivery is at least once: a crash between a send and its record
sends it again (hooks get ``SFTPD_NOTIFICATION_ID``, e-mails a stable ``Message-ID``). A
channel removed from the configuration (SIGHUP) drops its rows, logged, instead of retrying
them forever.

Personal data: numbers in the payload are masked, reply texts are left out (their length and,
for an opt-out, the stop keyword remain). Secrets: no password or passphrase reaches a log
line, an error string, an e-mail or a hook's environment (an allow-list: ``hook_environment``).
A hook's output is read as a bounded tail (the last 4 KiB of stdout and of stderr), so a hook
that writes gigabytes costs no memory; the tail is the failure's detail.

``sftpd-agent alert`` (the systemd unit's ``OnFailure=``) sends one e-mail outside the queue:
``send_alert``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import enum
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import PurePath
from typing import Any, NamedTuple

import aiosmtplib

from ..clock import Clock
from ..config import EmailSettings, HookSettings, NotifySettings, Settings
from ..logs import get_logger
from ..rules.backoff import Backoff
from ..rules.display import one_line
from ..rules.masking import mask, mask_numbers
from ..store.journal import Campaign, Store, now_iso, parse_iso

log = get_logger("sftpd_agent.notify")

EMAIL = "email"
HOOK_PREFIX = "hook:"

RETRY_BASE_SECONDS = 30.0
RETRY_CEILING_SECONDS = 3600.0
STALE_AFTER = datetime.timedelta(hours=24)
MAX_IDLE_SECONDS = 30.0
MIN_IDLE_SECONDS = 0.5
BATCH = 200  # rows read per pass; the rest follow on the next pass
ERROR_CHARS = 300
LISTED = 20  # numbers or replies listed in one e-mail

# Keys of event data: phone numbers (masked), lists of them, texts (dropped: length kept),
# and file names (kept as they are: a path is not personal data and must stay usable).
_NUMBER_KEYS = frozenset({"msisdn", "number"})
_NUMBER_LIST_KEYS = frozenset({"numbers", "msisdns"})
_TEXT_KEYS = frozenset({"message", "msg", "text", "body", "reply"})
_PATH_KEYS = frozenset({"file", "errors_file", "reason_file", "source", "remote_name",
                        "remote_names", "path", "report"})
_KEYWORD_CHARS = 20
HOOK_ENV_KEYS = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ",
                           "TMPDIR"})  # and LC_*: see hook_environment
HOOK_TAIL_BYTES = 4096  # of a hook's stdout and of its stderr: kept for the failure's detail
KILL_WAIT_SECONDS = 5.0  # for a killed hook to be reaped
PIPE_GRACE_SECONDS = 2.0  # after the hook's exit, to read what is left in its pipes


# -- the payload (pure) ---------------------------------------------------------------------


def event_payload(
    event: str, *, at: datetime.datetime, campaign: Campaign | None, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The event as a JSON-safe object: what a hook reads on stdin and an e-mail is made of."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    return {
        "event": event,
        "at": at.isoformat(timespec="seconds"),
        "campaign": None if campaign is None else _campaign_object(campaign, data),
        "data": {str(key): _safe(str(key), value) for key, value in data.items()},
    }


def _campaign_object(campaign: Campaign, data: Mapping[str, Any]) -> dict[str, Any]:
    summary = campaign.summary
    names = data.get("remote_names") or summary.get("remote_names") or []
    return {
        "campaign_id": campaign.campaign_id,
        "file": campaign.file,
        "state": str(campaign.state),
        "received_at": _iso(campaign.received_at),
        "send_at": _iso(campaign.send_at),
        **campaign.figures(),
        "reason": campaign.reason,
        "invalid_by_code": {str(k): int(v) for k, v in
                            dict(summary.get("invalid_by_code") or {}).items()},
        "transliterated": {str(k): int(v) for k, v in
                           dict(summary.get("transliterated") or {}).items()},
        "acks": {str(k): int(v) for k, v in dict(summary.get("acks") or {}).items()},
        "remote_names": [str(name) for name in names],
    }


def _iso(when: datetime.datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when is not None else None


def _safe(key: str, value: Any) -> Any:
    """``value`` JSON-safe, numbers masked, texts left out (see the module's docstring)."""
    lowered = key.lower()
    if isinstance(value, str):
        if lowered in _NUMBER_KEYS:
            return mask(value)
        if lowered in _PATH_KEYS:
            return value
        return mask_numbers(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _safe(key, value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return _safe_mapping(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        if lowered in _NUMBER_LIST_KEYS:
            return [mask(str(item)) if isinstance(item, str) else _safe(key, item)
                    for item in items]
        return [_safe(key, item) for item in items]
    return _safe(key, str(value))


def _safe_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, item in value.items():
        key = str(raw_key)
        if key.lower() in _TEXT_KEYS and isinstance(item, str):
            out[f"{key}_length"] = len(item)
            if value.get("opt_out") and len(item.strip()) <= _KEYWORD_CHARS:
                out["keyword"] = item.strip().upper()  # a stop keyword, not a personal text
        else:
            out[key] = _safe(key, item)
    return out


# -- channels ---------------------------------------------------------------------------


def hook_channel(command: Iterable[str]) -> str:
    return HOOK_PREFIX + json.dumps(list(command), ensure_ascii=False)


def channels_for(event: str, notify: NotifySettings) -> list[str]:
    """The channels whose filter takes ``event``, in configuration order."""
    found = []
    email = notify.email
    if email is not None and email.to and event in email.events:
        found.append(EMAIL)
    for hook in notify.hooks:
        channel = hook_channel(hook.command)
        if event in hook.events and channel not in found:
            found.append(channel)
    return found


def _target(channel: str, notify: NotifySettings) -> EmailSettings | HookSettings | None:
    if channel == EMAIL:
        return notify.email if notify.email is not None and notify.email.to else None
    return next((hook for hook in notify.hooks if hook_channel(hook.command) == channel), None)


def _shown(channel: str) -> str:
    """The channel for a log line: a hook by its program only (its arguments may be secret)."""
    if channel.startswith(HOOK_PREFIX):
        with contextlib.suppress(ValueError, IndexError, TypeError):
            return HOOK_PREFIX + str(json.loads(channel[len(HOOK_PREFIX):])[0])
    return channel


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Seconds before attempt ``attempts + 1``: 30 s doubling to 1 h, "equal jitter"."""
    return Backoff(RETRY_BASE_SECONDS, RETRY_CEILING_SECONDS, rng=rng).delay(attempts)


# -- the e-mail (pure) ------------------------------------------------------------------


def subject_of(payload: Mapping[str, Any], tz: datetime.tzinfo) -> str:
    """``[sftpd-agent] campaign promo held: 12 of 100 rows invalid (12.0%)`` and the like."""
    event = str(payload.get("event", ""))
    campaign = payload.get("campaign") or {}
    data = payload.get("data") or {}
    name = f"campaign {campaign.get('campaign_id', '?')}"
    match event:
        case "campaign.received":
            what = f"{name} received"
        case "campaign.held":
            what = f"{name} held: {_short_reason(campaign, data)}"
        case "campaign.scheduled":
            when = _local(campaign.get("send_at"), tz)
            what = f"{name} scheduled for {when}" if when else f"{name} scheduled"
        case "campaign.published":
            what = f"{name} published"
        case "campaign.done":
            what = f"{name} done"
        case "campaign.rejected":
            what = f"{name} rejected by the provider"
        case "campaign.overdue":
            what = f"{name} overdue: no verdict from the provider yet"
        case "campaign.reported":
            acks = campaign.get("acks") or {}
            figures = ", ".join(f"{count} {status}" for status, count in _by_count(acks))
            what = f"{name} delivery report: {figures or 'no delivery lines'}"
        case "optout.received":
            count = int(data.get("count") or len(data.get("numbers") or []))
            what = f"{count} opt-out{'s' if count != 1 else ''} received"
        case "reply.received":
            count = int(data.get("count") or len(data.get("replies") or []))
            what = f"{count} {'reply' if count == 1 else 'replies'} received"
        case "remote.unreachable":
            what = f"SFTP server unreachable: {_one_line(str(data.get('reason', 'unknown')))}"
        case "remote.recovered":
            what = "SFTP server reachable again"
        case _:
            what = event.replace(".", " ")
    return _one_line(f"[sftpd-agent] {what}", 200)


def body_of(payload: Mapping[str, Any], tz: datetime.tzinfo, *, host: str = "") -> str:
    """The plain-text body: what happened, the figures, where to look next."""
    event = str(payload.get("event", ""))
    campaign = payload.get("campaign")
    data = dict(payload.get("data") or {})
    lines: list[str] = [_opening(event, campaign, data), ""]
    if campaign:
        lines += _campaign_lines(event, campaign, data, tz)
    used = {"reason", "permanent", "file", "errors_file", "numbers", "replies", "remote_names"}
    if event == "optout.received":
        lines += _optout_lines(data)
    if event == "reply.received":
        lines += _reply_lines(data)
    if event == "remote.unreachable":
        lines += [f"Error:       {_one_line(str(data.get('reason', 'unknown')), 500)}"]
        if data.get("permanent"):
            lines += ["This failure will not go away by itself (host key, authentication or "
                      "permission): a person must act."]
        lines += ["", "Campaigns are kept and published once the server is reachable again."]
    details = [(k, v) for k, v in data.items() if k not in used and _scalar(v)]
    if details:
        lines += ["", "Details:"] + [f"  {k}: {_one_line(str(v), 200)}" for k, v in details]
    stamp = _local(payload.get("at"), tz)
    lines += ["", "--", f"{event} at {stamp}" + (f" on {host}" if host else ""),
              "sftpd-agent status   shows every campaign and the agent's health"]
    return "\n".join(lines) + "\n"


def render_email(
    payload: Mapping[str, Any], email: EmailSettings, *, tz: datetime.tzinfo,
    message_id: str | None = None, host: str = "",
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject_of(payload, tz)
    message["From"] = email.sender
    message["To"] = ", ".join(email.to)
    at = parse_iso(str(payload.get("at") or "")) or datetime.datetime.now(datetime.UTC)
    message["Date"] = format_datetime(at)
    domain = email.sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = message_id or f"<sftpd-agent.{at:%Y%m%d%H%M%S}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Sftpd-Agent-Event"] = str(payload.get("event", ""))
    message.set_content(body_of(payload, tz, host=host))
    return message


async def smtp_send(
    message: EmailMessage, email: EmailSettings, *, tls_context: ssl.SSLContext | None = None,
) -> None:
    """Send ``message`` as ``[notify.email]`` says, within 4 x ``timeout_seconds`` in all.

    Raises whatever went wrong (aiosmtplib's errors, ``OSError``, ``TimeoutError``)."""
    password = email.password.get_secret_value() if email.username else None
    async with asyncio.timeout(email.timeout_seconds * 4):
        await aiosmtplib.send(
            message, hostname=email.smtp_host, port=email.smtp_port,
            username=email.username or None, password=password or None,
            use_tls=email.tls, start_tls=email.starttls and not email.tls,
            timeout=email.timeout_seconds, tls_context=tls_context)


def _opening(event: str, campaign: Mapping[str, Any] | None, data: Mapping[str, Any]) -> str:
    name = f"Campaign {campaign.get('campaign_id', '?')}" if campaign else ""
    return {
        "campaign.received": f"{name} was received and is being validated.",
        "campaign.held": f"{name} was held: it will NOT be sent. Fix the file and drop it "
                         "again under a new name.",
        "campaign.scheduled": f"{name} is valid and scheduled.",
        "campaign.published": f"{name} was uploaded to the provider.",
        "campaign.done": f"{name} was accepted by the provider (.done).",
        "campaign.rejected": f"{name} was REJECTED by the provider (.reject): it will not be "
                             "sent. Check the file against the provider's rules.",
        "campaign.overdue": f"{name} has had no verdict (.done / .reject) from the provider "
                            "for longer than outcome_timeout_minutes.",
        "campaign.reported": f"{name}: the provider's delivery report arrived.",
        "optout.received": "These numbers opted out (STOP) and are now on the suppression list.",
        "reply.received": "Replies (SMS-MO) arrived. Read them with: sftpd-agent replies",
        "remote.unreachable": "The agent cannot reach the provider's SFTP server.",
        "remote.recovered": "The provider's SFTP server is reachable again"
                            + (f" after {data['after_failures']} failed attempts."
                               if data.get("after_failures") else "."),
    }.get(event, f"Event {event}.")


def _campaign_lines(
    event: str, c: Mapping[str, Any], data: Mapping[str, Any], tz: datetime.tzinfo
) -> list[str]:
    lines = [f"Campaign:    {c.get('campaign_id')}", f"File:        {c.get('file')}",
             f"State:       {c.get('state')}"]
    reason = data.get("reason") or c.get("reason")
    if reason and event in ("campaign.held", "campaign.rejected"):
        lines.append(f"Reason:      {_one_line(str(reason), 500)}")
    if data.get("file") and event == "campaign.held":
        held = str(data["file"])
        lines.append(f"Held file:   {held}")
        errors = data.get("errors_file") or (
            f"{held}.errors.csv" if c.get("invalid") else f"{held}.reason.txt")
        lines.append(f"Errors:      {errors}")
    elif data.get("errors_file"):
        lines.append(f"Errors:      {data['errors_file']}")
    if c.get("send_at"):
        lines.append(f"Send time:   {_local(c.get('send_at'), tz)}")
    names = c.get("remote_names") or []
    if names:
        lines.append(f"Provider files: {', '.join(str(n) for n in names)}")
    rows = int(c.get("rows") or 0)
    invalid = int(c.get("invalid") or 0)
    percent = f" ({100.0 * invalid / rows:.1f}%)" if rows else ""
    lines += ["", "Figures:",
              _figure("rows", rows), _figure("valid", c.get("valid")),
              _figure("invalid", invalid) + percent]
    lines += [_figure(code, count, indent=4) for code, count
              in _by_count(c.get("invalid_by_code") or {})]
    lines += [_figure(key, c.get(key)) for key in ("duplicates", "suppressed", "segments")]
    acks = c.get("acks") or {}
    if acks:
        lines += ["", "Delivery (provider's report):"]
        lines += [_figure(status, count) for status, count in _by_count(acks)]
    replaced = c.get("transliterated") or {}
    if replaced:
        shown = ", ".join(f"{char} x{count}" for char, count in _by_count(replaced))
        lines += ["", f"Characters replaced by their GSM form: {shown}"]
    return lines


def _figure(label: str, value: Any, *, indent: int = 2) -> str:
    """One aligned line of figures: the label left, the number right, in 30 columns."""
    return f"{' ' * indent}{label:<{20 - indent}} {int(value or 0):>9}"


def _optout_lines(data: Mapping[str, Any]) -> list[str]:
    numbers = [str(n) for n in data.get("numbers") or []]
    total = int(data.get("count") or len(numbers))
    lines = [f"Opt-outs:    {total}"]
    lines += [f"  {number}" for number in numbers[:LISTED]]
    if total > min(LISTED, len(numbers)):
        lines.append(f"  ... and {total - min(LISTED, len(numbers))} more "
                     "(sftpd-agent suppress list)")
    return lines


def _reply_lines(data: Mapping[str, Any]) -> list[str]:
    replies = [r for r in data.get("replies") or [] if isinstance(r, Mapping)]
    opt_outs = int(data.get("opt_outs") or sum(1 for r in replies if r.get("opt_out")))
    total = int(data.get("count") or len(replies))
    lines = [f"Replies:     {total} ({opt_outs} opt-out{'s' if opt_outs != 1 else ''})"]
    for reply in replies[:LISTED]:
        what = (f"opt-out ({reply.get('keyword', 'stop keyword')})" if reply.get("opt_out")
                else f"reply, {reply.get('message_length', '?')} characters")
        campaign = f", campaign {reply['campaign']}" if reply.get("campaign") else ""
        lines.append(f"  {reply.get('msisdn', '?')}  {what}{campaign}")
    if total > min(LISTED, len(replies)):
        lines.append(f"  ... and {total - min(LISTED, len(replies))} more "
                     "(sftpd-agent replies)")
    return lines


def _short_reason(campaign: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    rows, invalid = int(campaign.get("rows") or 0), int(campaign.get("invalid") or 0)
    reason = str(data.get("reason") or campaign.get("reason") or "see the e-mail")
    if rows and invalid and "rows invalid" in reason:
        return f"{invalid} of {rows} rows invalid ({100.0 * invalid / rows:.1f}%)"
    return _one_line(reason, 100)


def _by_count(figures: Mapping[str, Any]) -> list[tuple[str, int]]:
    return sorted(((str(k), int(v)) for k, v in figures.items()), key=lambda kv: (-kv[1], kv[0]))


def _local(iso: Any, tz: datetime.tzinfo) -> str:
    when = parse_iso(str(iso)) if iso else None
    if when is None:
        return ""
    label = tz.key if isinstance(tz, zoneinfo.ZoneInfo) else str(tz)
    return f"{when.astimezone(tz):%Y-%m-%d %H:%M} {label}"


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and value != ""


def _one_line(text: str, limit: int = ERROR_CHARS) -> str:
    return one_line(text, limit)


# -- the queue and its senders (the shell) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Queued:
    """One row of the ``notifications`` table."""

    id: int
    event: str
    channel: str
    payload: dict[str, Any]
    created_at: datetime.datetime
    attempts: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Queued:
        return cls(id=row["id"], event=row["event"], channel=row["channel"],
                   payload=json.loads(row["payload"]),
                   created_at=datetime.datetime.fromisoformat(row["created_at"]),
                   attempts=row["attempts"])

    @property
    def campaign_id(self) -> str:
        campaign = self.payload.get("campaign") or {}
        return str(campaign.get("campaign_id") or "")


class Notifications:
    """The durable queue and the sender task.

    ``settings`` is called at every pass, so a reload (SIGHUP) takes effect at once.
    ``tls_context`` verifies the SMTP server (default: the system's CAs, ``SSL_CERT_FILE``).
    """

    def __init__(
        self, store: Store, settings: Callable[[], Settings],
        clock: Clock, *, tls_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.tls_context = tls_context
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.host = socket.gethostname()
        self._stale_logged: set[int] = set()

    # -- the queue -----------------------------------------------------------------------

    def enqueue(self, event: str, payload: dict[str, Any]) -> int:
        """One row per channel that wants ``event``, in one durable transaction."""
        channels = channels_for(event, self.settings().notify)
        if not channels:
            return 0
        text = json.dumps(payload, ensure_ascii=False)
        now = now_iso(self.clock())
        with self.store.transaction() as db:
            db.executemany(
                "INSERT INTO notifications (event, channel, payload, created_at, next_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(event, channel, text, now, now) for channel in channels])
        log.debug("notification_queued", name=event, channels=[_shown(c) for c in channels])
        return len(channels)

    def pending(self) -> int:
        """Rows not sent yet."""
        return int(queue_status(self.store)["pending"])

    def next_due(self) -> datetime.datetime | None:
        row = self.store._db.execute(
            "SELECT min(next_at) FROM notifications WHERE sent_at IS NULL").fetchone()
        return parse_iso(row[0])

    def _due(self, now: datetime.datetime) -> list[Queued]:
        rows = self.store._db.execute(
            "SELECT id, event, channel, payload, created_at, attempts FROM notifications "
            "WHERE sent_at IS NULL AND next_at <= ? ORDER BY id LIMIT ?",
            (now_iso(now), BATCH)).fetchall()
        return [Queued.from_row(row) for row in rows]

    def _update(self, pk: int, **fields: Any) -> None:
        assignments = ", ".join(f"{key} = ?" for key in fields)
        with self.store.transaction() as db:
            db.execute(f"UPDATE notifications SET {assignments} WHERE id = ?",  # noqa: S608
                       (*fields.values(), pk))

    # -- sending -------------------------------------------------------------------------

    async def send_due(self) -> int:
        """Send every row that is due; the number sent. Never raises (failures are retried)."""
        return await self._send_due(None)

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """The sender task, until ``stop``. ``wake`` (set after an enqueue) is cleared here:
        give it to this task alone."""
        log.info("notifier_started", pending=self.pending())
        while not stop.is_set():
            wake.clear()
            await self._send_due(stop)
            if stop.is_set():
                break
            await _first_of(stop, wake, seconds=self._idle_seconds())

    def _idle_seconds(self) -> float:
        try:
            due = self.next_due()
        except sqlite3.Error:
            return MAX_IDLE_SECONDS
        if due is None:
            return MAX_IDLE_SECONDS
        wait = (due - self.clock()).total_seconds()
        return min(MAX_IDLE_SECONDS, max(MIN_IDLE_SECONDS, wait))

    async def _send_due(self, stop: asyncio.Event | None) -> int:
        try:
            settings = self.settings()
            rows = self._due(self.clock())
        except Exception as exc:
            log.error("notification_queue_error", error=_one_line(str(exc)))  # noqa: TRY400
            return 0
        channels: dict[str, list[Queued]] = {}
        for row in rows:
            channels.setdefault(row.channel, []).append(row)
        # Channels in parallel (a hanging hook does not hold the e-mail back), rows of one
        # channel in order.
        results = await asyncio.gather(
            *(self._send_channel(channel, queued, settings, stop)
              for channel, queued in channels.items()),
            return_exceptions=True)
        sent = 0
        for channel, result in zip(channels, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                log.error("notification_queue_error", channel=_shown(channel),
                          error=_scrub(f"{type(result).__name__}: {result}", settings))
            else:
                sent += result
        return sent

    async def _send_channel(
        self, channel: str, rows: list[Queued], settings: Settings, stop: asyncio.Event | None,
    ) -> int:
        target = _target(channel, settings.notify)
        sent = 0
        for index, row in enumerate(rows):
            if stop is not None and stop.is_set():
                break
            if target is None:
                self._update(row.id, sent_at=now_iso(self.clock()), last_error="channel removed")
                log.warning("notification_dropped", name=row.event, channel=_shown(channel),
                            campaign_id=row.campaign_id, reason="channel removed")
                continue
            failure = await self._deliver(row, target, settings)
            now = self.clock()
            if failure is None:
                self._update(row.id, sent_at=now_iso(now), attempts=row.attempts + 1,
                             last_error=None)
                log.info("notification_sent", name=row.event, channel=_shown(channel),
                         campaign_id=row.campaign_id, attempt=row.attempts + 1)
                sent += 1
                continue
            detail = {key: _redact(text, settings) for key, text in failure.detail.items()}
            next_at = self._failed(row, _scrub(failure.error, settings), now, detail)
            if failure.channel_down:
                # The rows behind wait as long (not attempted, not counted); a failure of one
                # row only (a hook's exit status) lets the next ones go: no head-of-line block.
                for later in rows[index + 1:]:
                    self._update(later.id, next_at=now_iso(next_at))
                break
        return sent

    def _failed(
        self, row: Queued, error: str, now: datetime.datetime,
        detail: Mapping[str, str] | None = None,
    ) -> datetime.datetime:
        attempts = row.attempts + 1
        delay = retry_delay(attempts, self.rng)
        next_at = now + datetime.timedelta(seconds=delay)
        self._update(row.id, attempts=attempts, last_error=error, next_at=now_iso(next_at))
        log.warning("notification_failed", name=row.event, channel=_shown(row.channel),
                    campaign_id=row.campaign_id, attempt=attempts, error=error,
                    retry_in=round(delay), **(detail or {}))
        if now - row.created_at >= STALE_AFTER and row.id not in self._stale_logged:
            self._stale_logged.add(row.id)
            log.error("notification_stale", name=row.event, channel=_shown(row.channel),
                      campaign_id=row.campaign_id, attempts=attempts,
                      since=now_iso(row.created_at), error=error)
        return next_at

    async def _deliver(
        self, row: Queued, target: EmailSettings | HookSettings, settings: Settings,
    ) -> _Failure | None:
        """None when sent, else what went wrong (not yet scrubbed of secrets)."""
        try:
            if isinstance(target, EmailSettings):
                await self._send_email(row, target, settings)
                return None
            return await self._run_hook(row, target)
        except Exception as exc:
            # Connection, TLS, authentication, refused addresses, a program that cannot start:
            # the channel is down. Only a refused message (DATA) is about this row alone.
            return _Failure(f"{type(exc).__name__}: {exc}",
                            channel_down=not isinstance(exc, aiosmtplib.SMTPDataError))

    async def _send_email(self, row: Queued, email: EmailSettings, settings: Settings) -> None:
        domain = email.sender.rpartition("@")[2] or "localhost"
        message = render_email(
            row.payload, email, tz=settings.tz, host=self.host,
            message_id=f"<sftpd-agent.{row.id}.{row.created_at:%Y%m%d%H%M%S}@{domain}>")
        await smtp_send(message, email, tls_context=self.tls_context)

    async def _run_hook(self, row: Queued, hook: HookSettings) -> _Failure | None:
        stdin = json.dumps(row.payload, ensure_ascii=False).encode() + b"\n"
        env = hook_environment(row.event, row.campaign_id, row.id)
        ran = await run_hook(hook.command, stdin, env=env, seconds=hook.timeout_seconds)
        if ran.timed_out:
            return _Failure(f"timed out after {hook.timeout_seconds:g} s, killed",
                            channel_down=True, detail=ran.detail())
        code = ran.returncode
        if code == 0:
            return None
        status = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
                  else f"exit status {code}")
        last = ran.last_line()
        return _Failure(f"{status}: {_one_line(last, 200)}" if last else status,
                        channel_down=False, detail=ran.detail())


class _Failure(NamedTuple):
    error: str
    channel_down: bool  # True: the rows behind on this channel would fail too: wait
    detail: Mapping[str, str] = {}  # a hook's output tails (read only)


# -- the alert: systemd gave up on the unit (``sftpd-agent alert``) --------------------------

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
    env = {key: value for key, value in (os.environ if environ is None else environ).items()
           if key in HOOK_ENV_KEYS or key.startswith("LC_")}
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
        return Journal([], _one_line(f"journalctl could not start: {exc}"))
    lines = [_one_line(line, JOURNAL_LINE_CHARS) for line in ran.stdout.splitlines()
             if line.strip()][-JOURNAL_LINES:]
    if ran.timed_out:
        return Journal(lines, f"journalctl took longer than {JOURNAL_SECONDS:g} s")
    if ran.returncode != 0:
        return Journal(lines, _one_line(f"journalctl failed (exit status {ran.returncode}): "
                                        f"{ran.last_line()}"))
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
    message["Subject"] = _one_line(
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
    lines += [f"{label + ':':<12} {_one_line(monitor[key], 200)}" for key, label in _MONITOR
              if monitor.get(key)]
    lines += [f"{'Stopped:':<12} {_local(at.isoformat(), tz)}", ""]
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
        return _scrub(f"{type(exc).__name__}: {exc}", settings)
    return None


def queue_status(store: Store) -> dict[str, Any]:
    """The queue's figures for ``status`` and metrics (works on a read-only store).

    ``pending``: rows not sent; ``failing``: of those, rows whose last attempt failed;
    ``oldest``: when the oldest pending row was queued; ``last_error``: the latest failure.
    """
    db = store._db
    pending, failing, oldest = db.execute(
        "SELECT count(*), coalesce(sum(attempts > 0), 0), min(created_at) "
        "FROM notifications WHERE sent_at IS NULL").fetchone()
    last = db.execute(
        "SELECT last_error FROM notifications WHERE sent_at IS NULL AND attempts > 0 "
        "ORDER BY id DESC LIMIT 1").fetchone()
    return {"pending": int(pending), "failing": int(failing), "oldest": oldest,
            "last_error": last[0] if last else None}


def hook_environment(
    event: str, campaign_id: str, notification_id: int,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What a hook sees: an allow-list of the agent's environment, plus the event.

    Only ``PATH``, ``HOME``, ``USER``, ``LOGNAME``, ``LANG``, ``LANGUAGE``, ``LC_*``, ``TZ``
    and ``TMPDIR`` are passed on: never ``CREDENTIALS_DIRECTORY``, ``SFTPD_AGENT_*`` (they
    may hold secrets), systemd's sockets or anything else a site put in the agent's
    environment. A hook that needs more gets it in its ``command`` (``/usr/bin/env K=V ...``).
    """
    source = os.environ if environ is None else environ
    env = {key: value for key, value in source.items()
           if key in HOOK_ENV_KEYS or key.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    env["SFTPD_EVENT"] = event
    env["SFTPD_CAMPAIGN"] = campaign_id
    env["SFTPD_NOTIFICATION_ID"] = str(notification_id)
    return env


# -- running a hook (the shell) ---------------------------------------------------------


class _Tail:
    """The last ``limit`` bytes of a stream, whatever its length: the rest is discarded."""

    __slots__ = ("data", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk[-self.limit:]
        if len(self.data) > self.limit:
            del self.data[:-self.limit]

    def text(self) -> str:
        """The tail as text, numbers masked (a hook may print what it was given)."""
        text = self.data.decode("utf-8", errors="replace")
        if self.total > len(self.data):
            text = "..." + text.partition("\n")[2]  # a cut first line says nothing
        return mask_numbers(text.strip())


class _HookProtocol(asyncio.SubprocessProtocol):
    """Keeps a bounded tail of stdout and stderr as data arrives; tells when the process
    exits (``exited``, not waiting for pipes a child may hold open) and when all is closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.tails = {1: _Tail(limit), 2: _Tail(limit)}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.tails[fd].add(data if isinstance(data, bytes) else data.encode())

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass(frozen=True, slots=True)
class HookRun:
    """How a hook ended: its exit status (None: it was killed at the timeout) and output tails."""

    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str

    def last_line(self) -> str:
        """The last non-blank line of stderr, else of stdout: the hook's own last word."""
        for text in (self.stderr, self.stdout):
            line = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
            if line:
                return line.strip()
        return ""

    def detail(self) -> dict[str, str]:
        return {key: value for key, value in (("stderr", self.stderr), ("stdout", self.stdout))
                if value}


async def run_hook(
    argv: Iterable[str], stdin: bytes, *, env: Mapping[str, str], seconds: float,
    tail_bytes: int = HOOK_TAIL_BYTES,
) -> HookRun:
    """Run one hook: ``stdin`` in, at most ``tail_bytes`` of each output kept, ``seconds`` long.

    The hook runs in its own session, so its process group is the hook and everything it
    started (unless one of them made a session of its own). That group is killed (SIGKILL)
    when the time runs out, when the caller is cancelled, and also once the hook has exited:
    a hook is done when it exits, and what it left behind would hold the agent's memory and
    tasks (``MemoryMax=``, ``TasksMax=``) or the output pipes.
    """
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _HookProtocol(loop, tail_bytes), *argv,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=dict(env), start_new_session=True)
    pid = transport.get_pid()
    timed_out = False
    try:
        pipe = transport.get_pipe_transport(0)
        if isinstance(pipe, asyncio.WriteTransport):
            pipe.write(stdin)  # buffered by the transport: a hook that never reads costs no wait
            pipe.close()
        try:
            async with asyncio.timeout(seconds):
                await asyncio.shield(protocol.exited)
        except TimeoutError:
            timed_out = True
            _kill_group(pid)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_WAIT_SECONDS):
                    await asyncio.shield(protocol.exited)
        _kill_group(pid)  # whatever the hook left running
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PIPE_GRACE_SECONDS):
                await asyncio.shield(protocol.closed)
    except BaseException:
        _kill_group(pid)
        raise
    finally:
        transport.close()
    return HookRun(returncode=None if timed_out else transport.get_returncode(),
                   timed_out=timed_out, stdout=protocol.tails[1].text(),
                   stderr=protocol.tails[2].text())


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _first_of(*events: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _scrub(error: str, settings: Settings) -> str:
    """``error`` on one line, without any configured secret (servers echo what they got)."""
    return _one_line(_redact(" ".join(error.split()), settings))


def _redact(text: str, settings: Settings) -> str:
    """``text`` with every configured secret (and the SMTP login's base64 forms) as ``***``."""
    secrets: list[str] = []
    email = settings.notify.email
    if email is not None and email.password.get_secret_value():
        password = email.password.get_secret_value()
        secrets += [password, base64.b64encode(password.encode()).decode(),
                    base64.b64encode(f"\0{email.username}\0{password}".encode()).decode()]
    passphrase = settings.remote.private_key_passphrase
    if passphrase is not None and passphrase.get_secret_value():
        secrets.append(passphrase.get_secret_value())
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
