"""E-mail: the message for an event (pure) and sending it (``[notify.email]``).

``subject_of`` and ``body_of`` say what happened, the figures and where to look next, in the
configured time zone; ``render_email`` makes the message; ``smtp_send`` sends it (TLS or
STARTTLS, login, every step under a timeout).
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import zoneinfo
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib

from ..config import EmailSettings
from ..rules.display import one_line
from ..store.records import parse_iso
from .payload import ERROR_CHARS

LISTED = 20  # numbers or replies listed in one e-mail


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
            when = local_time(campaign.get("send_at"), tz)
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
            reason = one_line(str(data.get("reason", "unknown")), ERROR_CHARS)
            what = f"SFTP server unreachable: {reason}"
        case "remote.recovered":
            what = "SFTP server reachable again"
        case _:
            what = event.replace(".", " ")
    return one_line(f"[sftpd-agent] {what}", 200)


def body_of(payload: Mapping[str, Any], tz: datetime.tzinfo, *, host: str = "") -> str:
    """The plain-text body: what happened, the figures, where to look next."""
    event = str(payload.get("event", ""))
    campaign = payload.get("campaign")
    data = dict(payload.get("data") or {})
    lines: list[str] = [_opening(event, campaign, data), ""]
    if campaign:
        lines += _campaign_lines(event, campaign, data, tz)
    used = {"reason", "permanent", "file", "errors_file", "numbers", "replies", "remote_names",
            "results_file"}
    if event == "optout.received":
        lines += _optout_lines(data)
    if event == "reply.received":
        lines += _reply_lines(data)
    if event == "remote.unreachable":
        lines += [f"Error:       {one_line(str(data.get('reason', 'unknown')), 500)}"]
        if data.get("permanent"):
            lines += ["This failure will not go away by itself (host key, authentication or "
                      "permission): a person must act."]
        lines += ["", "Campaigns are kept and published once the server is reachable again."]
    details = [(k, v) for k, v in data.items() if k not in used and _scalar(v)]
    if details:
        lines += ["", "Details:"] + [f"  {k}: {one_line(str(v), 200)}" for k, v in details]
    stamp = local_time(payload.get("at"), tz)
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
        lines.append(f"Reason:      {one_line(str(reason), 500)}")
    if data.get("file") and event == "campaign.held":
        held = str(data["file"])
        lines.append(f"Held file:   {held}")
        errors = data.get("errors_file") or (
            f"{held}.errors.csv" if c.get("invalid") else f"{held}.reason.txt")
        lines.append(f"Errors:      {errors}")
    elif data.get("errors_file"):
        lines.append(f"Errors:      {data['errors_file']}")
    if data.get("results_file"):
        lines.append(f"Results:     {data['results_file']}  (one row per contact, for the CRM)")
    if c.get("send_at"):
        lines.append(f"Send time:   {local_time(c.get('send_at'), tz)}")
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
    return one_line(reason, 100)


def _by_count(figures: Mapping[str, Any]) -> list[tuple[str, int]]:
    return sorted(((str(k), int(v)) for k, v in figures.items()), key=lambda kv: (-kv[1], kv[0]))


def local_time(iso: Any, tz: datetime.tzinfo) -> str:
    """An ISO time as ``2026-11-23 10:00 Europe/Paris`` in ``tz``; blank when there is none."""
    when = parse_iso(str(iso)) if iso else None
    if when is None:
        return ""
    label = tz.key if isinstance(tz, zoneinfo.ZoneInfo) else str(tz)
    return f"{when.astimezone(tz):%Y-%m-%d %H:%M} {label}"


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and value != ""
