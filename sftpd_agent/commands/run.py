"""``sftpd-agent run``: the daemon, in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import os

from ..clock import system_clock
from ..config import load_settings
from ..logs import configure, get_logger
from ..testing import SWITCHES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``run`` takes no argument but ``--config``."""


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)  # a configuration error first, in one line
    from ..daemon import open_agent  # noqa: PLC0415  (the daemon's imports only for run)

    configure()
    ignored = [name for name in SWITCHES if name in os.environ]
    if ignored:
        get_logger(__name__).warning(
            "test_switches_ignored", switches=ignored,
            detail="honoured only by python -m sftpd_agent.testing run")
    agent = open_agent(settings, config_path=args.config, clock=system_clock)
    return asyncio.run(agent.run())
