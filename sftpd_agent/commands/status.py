"""``sftpd-agent status``: the agent's health and every campaign, from the journal.

Read-only beside a running daemon (SQLite WAL). The daemon writes a heartbeat every few
seconds; the agent is healthy when that heartbeat is fresh, the last poll of the provider
succeeded recently and no remote error stands.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any, TextIO

from ..config import Settings, load_settings
from ..errors import ConfigError, ExitCode
from ..notify.queue import queue_status
from ..store.journal import Store
from ..store.records import parse_iso


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="the contract's JSON object (also whenever stdout is not a "
                             "terminal)")


def run(args: argparse.Namespace) -> int:
    return show(args, sys.stdout)


def show(args: argparse.Namespace, out: TextIO) -> ExitCode:
    settings = load_settings(args.config)
    if not settings.paths.state_db.exists():
        raise ConfigError(f"{settings.paths.state_db}: no journal yet (has the agent run?)")
    store = Store(settings.paths.state_db, readonly=True)
    try:
        report = status(store, settings, datetime.datetime.now(datetime.UTC))
    finally:
        store.close()
    if args.json or not out.isatty():
        print(json.dumps(report, ensure_ascii=False), file=out)
    else:
        print(render(report), file=out)
    return ExitCode.OK if report["agent"]["healthy"] else ExitCode.NOT_OK


def health(store: Store, settings: Settings, now: datetime.datetime) -> dict[str, Any]:
    heartbeat = parse_iso(store.fact("heartbeat"))
    started = parse_iso(store.fact("started_at"))
    stopped = parse_iso(store.fact("stopped_at"))
    last_poll = parse_iso(store.fact("last_poll"))
    remote_error = store.fact("remote_error")
    fresh = datetime.timedelta(seconds=max(60.0, 3 * settings.remote.poll_seconds))
    running = (heartbeat is not None and now - heartbeat < fresh
               and (stopped is None or (started is not None and started > stopped)))
    polled = last_poll is not None and now - last_poll < fresh + fresh
    problems = []
    if not running:
        problems.append("the agent is not running (no fresh heartbeat)")
    if remote_error:
        problems.append(f"remote: {remote_error}")
    elif running and not polled:
        problems.append("no successful poll of the provider recently")
    local = settings.tz
    return {
        "healthy": not problems,
        "attention": attention(store),
        "last_local_error": store.fact("last_local_error"),
        "last_poll": last_poll.astimezone(local).isoformat() if last_poll else None,
        "remote_error": remote_error,
        "heartbeat": heartbeat.astimezone(local).isoformat() if heartbeat else None,
        "pid": store.fact("pid"),
        "problems": problems,
        "notifications": queue_status(store),
    }


def attention(store: Store) -> list[str]:
    """What the agent could not do and left for a person, one line each: entries of the
    outbox it never takes, report files it skipped, campaigns waiting on a failed step.
    (Held campaigns carry their reason in the campaign list.)"""
    lines = [f"outbox entry {name}: {reason}"
             for name, reason in sorted((store.fact("outbox_odd") or {}).items())]
    lines += [f"report file {name}: {reason}"
              for name, reason in sorted((store.fact("report_skipped") or {}).items())]
    return lines


def campaigns(store: Store, settings: Settings) -> list[dict[str, Any]]:
    local = settings.tz
    out = []
    for campaign in store.campaigns():
        parts = store.parts(campaign.id)
        names = [p.remote_name for p in parts] or list(
            campaign.summary.get("remote_names", []))
        out.append({
            "pk": campaign.id,
            "campaign_id": campaign.campaign_id,
            "file": campaign.file,
            "state": str(campaign.state),
            "send_at": campaign.send_at.astimezone(local).isoformat() if campaign.send_at
            else None,
            "remote_names": names,
            **campaign.figures(),
            "acks": store.acks(campaign.id),
            "reason": campaign.reason,
            "received_at": campaign.received_at.astimezone(local).isoformat(),
            "groups": list(campaign.summary.get("groups", [])),
            # a group of its send times still to go: when its files are prepared
            "next_upload_at": campaign.next_upload_at.astimezone(local).isoformat()
            if campaign.next_upload_at else None,
        })
    return out


def status(store: Store, settings: Settings, now: datetime.datetime) -> dict[str, Any]:
    return {"agent": health(store, settings, now), "campaigns": campaigns(store, settings)}


def render(report: dict[str, Any]) -> str:
    """A readable table for a terminal."""
    agent = report["agent"]
    lines = [
        f"agent: {'healthy' if agent['healthy'] else 'UNHEALTHY'}"
        f"  (pid {agent['pid']}, last poll {agent['last_poll'] or 'never'})",
    ]
    lines += [f"  ! {problem}" for problem in agent["problems"]]
    lines += [f"  ? {line}" for line in agent["attention"]]
    error = agent["last_local_error"]
    if error:
        lines.append(f"  last local error ({error['at']}): {error['unit']}: {error['error']}")
    queue = agent["notifications"]
    if queue["pending"]:
        lines.append(f"  notifications waiting: {queue['pending']}"
                     + (f" ({queue['failing']} failing: {queue['last_error']})"
                        if queue["failing"] else ""))
    header = f"{'campaign':<20} {'state':<10} {'send at':<16} {'rows':>7} {'valid':>7} " \
             f"{'invalid':>7} {'dup':>5} {'supp':>5} {'segments':>8}  acks"
    lines += ["", header, "-" * len(header)]
    for c in report["campaigns"]:
        send_at = (c["send_at"] or "")[:16].replace("T", " ")
        acks = ", ".join(f"{k} {v}" for k, v in sorted(c["acks"].items())) or "-"
        lines.append(f"{c['campaign_id'][:20]:<20} {c['state']:<10} {send_at:<16} "
                     f"{c['rows']:>7} {c['valid']:>7} {c['invalid']:>7} {c['duplicates']:>5} "
                     f"{c['suppressed']:>5} {c['segments']:>8}  {acks}")
        if c["reason"]:
            lines.append(f"{'':<20} reason: {c['reason']}")
        if len(c.get("groups", [])) > 1:
            lines += [f"{'':<20} {_group_line(group)}" for group in c["groups"]]
    if not report["campaigns"]:
        lines.append("(no campaigns yet)")
    return "\n".join(lines)


def _group_line(group: dict[str, Any]) -> str:
    """One send-time group: ``MQ: 120 rows at 2027-06-01 14:00 Paris (MQ 08:00) -> names``,
    then where it is: waiting (prepared at its own upload time), uploaded (rows sent,
    suppressed then), empty, or skipped with the reason."""
    paris = str(group.get("send_at", ""))[:16].replace("T", " ")
    local = ", ".join(f"{zone} {str(when)[11:16]}" for zone, when in group.get("local", {}).items())
    names = ", ".join(group.get("remote_names", []))
    state = group.get("state", "waiting")
    if state in ("uploaded", "empty"):
        state += f": {group.get('rows_sent', 0)} sent, {group.get('suppressed', 0)} suppressed"
    elif state == "skipped":
        state += f": {group.get('reason', '')}"
    return (f"{'+'.join(group.get('zones', []))}: {group.get('rows')} rows at {paris} Paris "
            f"({local}) -> {names} [{state}]")
