"""``sftpd-agent submit FILE``: place a file in the outbox under the provider's file name."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import TextIO

from ..config import load_settings
from ..errors import ConfigError, ExitCode
from ..pipeline.outbox import submit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the campaign CSV file to send")
    parser.add_argument("--campaign", metavar="ID", help="campaign id (default: from FILE)")
    parser.add_argument("--at", metavar="YYYY-MM-DD HH:MM",
                        help="send time in the configured time zone (default: the time in a "
                             "file name written the provider's way, else now)")


def run(args: argparse.Namespace) -> int:
    return place(args, sys.stdout)


def place(args: argparse.Namespace, out: TextIO) -> ExitCode:
    settings = load_settings(args.config)
    at = None
    if args.at:
        try:
            at = datetime.datetime.strptime(args.at, "%Y-%m-%d %H:%M")
        except ValueError:
            raise ConfigError(f"--at: {args.at!r} is not a time YYYY-MM-DD HH:MM") from None
    source = Path(args.file)
    target, notes = submit(source, settings, campaign=args.campaign, at=at,
                           now=datetime.datetime.now(datetime.UTC))
    for note in notes:  # before the last line, which scripts read for the name
        print(f"note: {note}", file=out)
    print(f"submitted {source} as {target}", file=out)
    return ExitCode.OK
