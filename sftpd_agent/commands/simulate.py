"""``sftpd-agent simulate``: the provider simulator on its own.

Thin: the simulator's command is ``sftpd_agent.simulator.command``. ``--config`` is optional
here: given, its ``service_id`` is the default of ``--service-id`` (so that the simulator
accepts the names that agent writes); nothing else is read from it.
"""

from __future__ import annotations

import argparse

from ..config import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..simulator import command  # noqa: PLC0415

    command.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..simulator import command  # noqa: PLC0415

    if args.config is not None and args.service_id is None:
        args.service_id = load_settings(args.config).service_id
    return command.run(args)
