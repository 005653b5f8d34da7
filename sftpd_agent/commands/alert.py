"""``sftpd-agent alert --unit NAME``: e-mail that systemd gave up on NAME (its OnFailure=)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from ..config import load_settings
from ..errors import ConfigError, ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--unit", required=True, metavar="NAME",
                        help="the unit that failed, e.g. sftpd-agent.service (%%i in the "
                             "template)")


def run(args: argparse.Namespace) -> int:
    return alert(args, sys.stdout)


def alert(args: argparse.Namespace, out: TextIO) -> ExitCode:
    from ..notify.alert import UNIT_NAME, send_alert  # noqa: PLC0415  (mail code: only here)

    if not UNIT_NAME.fullmatch(args.unit):
        raise ConfigError(f"alert: {args.unit!r} is not a unit name")
    settings = load_settings(args.config)
    email = settings.notify.email
    if email is None or not email.to:
        raise ConfigError("alert: no [notify.email] with recipients (to) in the "
                          "configuration: no one to tell")
    error = asyncio.run(send_alert(settings, args.unit))
    if error is not None:
        print(f"sftpd-agent: alert not sent: {error}", file=sys.stderr)
        return ExitCode.NOT_OK
    print(f"alert for {args.unit} sent to {', '.join(email.to)}", file=out)
    return ExitCode.OK
