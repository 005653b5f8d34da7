"""``sftpd-agent submit FILE``: place a file in the outbox under the provider's file name;
``submit CONTACTS --message-file T.txt``: a contact export and a manifest naming it."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import TextIO

from ..config import load_settings
from ..errors import ConfigError, ExitCode
from ..pipeline.outbox import submit, submit_contacts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE",
                        help="the campaign CSV file to send, or a contact export with "
                             "--message-file")
    parser.add_argument("--message-file", metavar="T.txt",
                        help="FILE is a contact export: send it with this message template "
                             "({Column}, {Column|default}); writes FILE and a manifest "
                             "<campaign>.campaign.toml into the outbox")
    parser.add_argument("--sender", metavar="OADC",
                        help="with --message-file: the sender (default: default_sender)")
    parser.add_argument("--campaign", metavar="ID", help="campaign id (default: from FILE)")
    parser.add_argument("--at", metavar="YYYY-MM-DD HH:MM",
                        help="send time in the configured time zone (default: the time in a "
                             "file name written the provider's way, else now)")


def run(args: argparse.Namespace) -> int:
    return place(args, sys.stdout)


def send_time(text: str | None) -> datetime.datetime | None:
    """``--at``: a naive local time, or None when not given."""
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M")
    except ValueError:
        raise ConfigError(f"--at: {text!r} is not a time YYYY-MM-DD HH:MM") from None


def message_template(path: str) -> str:
    """``--message-file``: the template (UTF-8, a BOM and a final line end dropped)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--message-file {path}: cannot be read: {exc}") from None
    return text.removesuffix("\n").removesuffix("\r")


def place(args: argparse.Namespace, out: TextIO) -> ExitCode:
    settings = load_settings(args.config)
    at = send_time(args.at)
    source = Path(args.file)
    if args.message_file:
        template = message_template(args.message_file)
        contacts, manifest = submit_contacts(
            source, template, settings,
            campaign=args.campaign, at=at, sender=args.sender,
            now=datetime.datetime.now(datetime.UTC))
        print(f"submitted {source} as {contacts} with the manifest {manifest}", file=out)
        return ExitCode.OK
    if args.sender:
        raise ConfigError("--sender goes with --message-file (a provider file names its own)")
    target, notes = submit(source, settings, campaign=args.campaign, at=at,
                           now=datetime.datetime.now(datetime.UTC))
    for note in notes:  # before the last line, which scripts read for the name
        print(f"note: {note}", file=out)
    print(f"submitted {source} as {target}", file=out)
    return ExitCode.OK
