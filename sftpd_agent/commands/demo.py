"""``sftpd-agent demo``: two sample campaigns' whole life against the embedded simulator.

Thin: the demo itself is ``sftpd_agent.demo.orchestrator``. ``--config`` is accepted, as by
every command, and ignored: the demo writes its own configuration in its temporary folder.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..demo import orchestrator  # noqa: PLC0415  (the demo's imports only for demo)

    orchestrator.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..demo import orchestrator  # noqa: PLC0415

    return orchestrator.run(args)
