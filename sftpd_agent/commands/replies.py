"""``sftpd-agent replies``: the SMS-MO replies received, from the journal."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import TextIO

from ..config import Settings, load_settings
from ..errors import ConfigError, ExitCode
from ..rules.display import shown
from ..store.journal import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON array of replies")
    parser.add_argument("--campaign", metavar="ID", help="only this campaign's replies")


def run(args: argparse.Namespace) -> int:
    return replies(args, load_settings(args.config), sys.stdout)


def replies(args: argparse.Namespace, settings: Settings, out: TextIO) -> ExitCode:
    if not settings.paths.state_db.exists():
        raise ConfigError(f"{settings.paths.state_db}: no journal yet (has the agent run?)")
    store = Store(settings.paths.state_db, readonly=True)
    try:
        found = store.replies(args.campaign)
    finally:
        store.close()
    if args.json:
        print(json.dumps(found, ensure_ascii=False), file=out)
        return ExitCode.OK
    for reply in found:
        when = datetime.datetime.fromisoformat(reply["received_at"]).astimezone(
            settings.tz).strftime("%Y-%m-%d %H:%M") if reply["received_at"] else "?"
        flag = "  [opt-out]" if reply["opt_out"] else ""
        print(f"{when}  {reply['msisdn']:<16}  {reply['campaign_id'] or '-':<20}  "
              f"{shown(reply['message'])}{flag}", file=out)  # a reply may hold escapes
    return ExitCode.OK
