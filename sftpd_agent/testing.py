"""Test switches, kept out of the production daemon: ``python -m sftpd_agent.testing run``.

The production ``sftpd-agent run`` always uses the system clock and never kills itself.
Tests (and the demo) that need to move a running daemon's time forward, or to kill it at a
chosen point to prove crash safety, start it through this module instead, which honours:

- ``SFTPD_AGENT_CLOCK_OFFSET_FILE``: a file holding seconds (as text) added to real time,
  re-read when it changes ("it is now 09:50" without sleeping);
- ``SFTPD_AGENT_FAULT``: a point (``before_upload``, ``mid_upload``, ``after_upload``,
  ``after_rename``, ``report_chunk``) at which the process kills itself with SIGKILL.

It says so at start, with a warning naming the switches in force.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .clock import Clock, system_clock
from .logs import get_logger

log = get_logger("sftpd_agent.testing")

CLOCK_OFFSET_ENV = "SFTPD_AGENT_CLOCK_OFFSET_FILE"
FAULT_ENV = "SFTPD_AGENT_FAULT"
SWITCHES = (CLOCK_OFFSET_ENV, FAULT_ENV)


class OffsetClock:
    """Real time plus the number of seconds written in ``path`` (0 while it is absent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: tuple[int, float] | None = None

    def offset(self) -> float:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0.0
        if self._cache is None or self._cache[0] != stamp:
            text = self.path.read_text(encoding="utf-8").strip()
            self._cache = (stamp, float(text or 0))
        return self._cache[1]

    def __call__(self) -> datetime.datetime:
        return system_clock() + datetime.timedelta(seconds=self.offset())


def clock_from_environment() -> Clock:
    path = os.environ.get(CLOCK_OFFSET_ENV)
    return OffsetClock(Path(path)) if path else system_clock


def fault_hook_from_environment() -> Callable[[str, object], None] | None:
    point = os.environ.get(FAULT_ENV)
    if not point:
        return None

    def hook(reached: str, subject: object) -> None:
        if reached == point:
            name = getattr(subject, "remote_name", None) or str(subject)
            log.warning("fault_injected", point=point, remote_name=name)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def main(argv: Sequence[str] | None = None) -> int:
    """``run [--config PATH]`` with the test switches honoured."""
    from .config import load_settings  # noqa: PLC0415
    from .daemon import Agent  # noqa: PLC0415
    from .logs import configure  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m sftpd_agent.testing",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", choices=["run"])
    parser.add_argument("--config", metavar="PATH")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    settings = load_settings(args.config)
    configure()
    log.warning("test_mode", switches={k: os.environ[k] for k in SWITCHES if k in os.environ},
                detail="test switches honoured: never run this in production")
    agent = Agent(settings, clock=clock_from_environment(), config_path=args.config,
                  fault_hook=fault_hook_from_environment())
    return asyncio.run(agent.run())


if __name__ == "__main__":
    sys.exit(main())
