"""Test switches, kept out of the production daemon: ``python -m sftpd_agent.testing run``.

The production ``sftpd-agent run`` always uses the system clock and never kills itself.
Tests (and the demo) that need to move a running daemon's time forward, or to kill it at a
chosen point to prove crash safety, start it through this module instead, which honours:

- ``SFTPD_AGENT_CLOCK_OFFSET_FILE``: a file holding seconds (as text) added to real time,
  re-read when it changes ("it is now 09:50" without sleeping);
- ``SFTPD_AGENT_FAULT``: a point (``before_upload``, ``mid_upload``, ``after_upload``,
  ``after_rename``, ``report_chunk``) at which the process kills itself with SIGKILL.

It says so at start, with a warning naming the switches in force.

It also ships what tests (and the demo) use to drive the agent, as ``structlog.testing`` does:

- :class:`ManualClock`, a clock that moves only when told to;
- :class:`DaemonProcess`, the agent as a child process: started with its ``--config`` in a
  clean environment, its output kept in a log file, its JSON log lines read back, stopped
  with SIGTERM or killed. ``tests/daemon_harness.py`` and ``sftpd-agent demo`` both use it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

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


class ManualClock:
    """An aware clock that moves only when told to; safe to read from other threads."""

    def __init__(self, start: datetime.datetime | None = None) -> None:
        self._now = start or datetime.datetime.now(datetime.UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime.datetime:
        with self._lock:
            self._now += datetime.timedelta(seconds=seconds)
            return self._now


# --- the agent as a child process ---------------------------------------------------------

WAIT_SECONDS = 30.0
TEST_ENTRY = ("-m", "sftpd_agent.testing", "run")  # this module's ``main``: switches honoured
PRODUCTION_ENTRY = ("-m", "sftpd_agent", "run")  # ``sftpd-agent run``: switches ignored
# Variables that would steer a child daemon away from the configuration it is given.
_SYSTEMD_ENV = ("CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without what would override a child daemon's
    configuration (``SFTPD_AGENT_*``, systemd's variables), unbuffered, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("SFTPD_AGENT_") and key not in _SYSTEMD_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _json_lines(data: bytes) -> list[dict[str, Any]]:
    out = []
    for raw in data.splitlines():  # bytes: only at \n and \r, unlike str.splitlines
        try:
            line = json.loads(raw.decode("utf-8", "replace"))
        except ValueError:  # not JSON: a traceback, a message on stderr
            continue
        if isinstance(line, dict):
            out.append(line)
    return out


class DaemonProcess:
    """The agent as a child process: ``[*wrapper, python, *entry, "--config", config]``.

    ``entry`` is :data:`TEST_ENTRY` (the test switches honoured) unless the caller runs the
    production :data:`PRODUCTION_ENTRY`; ``wrapper`` is e.g. ``setpriv ...``. The child gets
    :func:`clean_environment` plus ``env`` plus what :meth:`start` is given. Each start writes
    the child's output (JSON log lines and anything else, a traceback) to its own file in
    ``log_dir`` (``log_name`` with ``{run}``: 1, 2, ...). Every wait is bounded in time.
    """

    def __init__(self, config: Path, *, entry: Sequence[str] = TEST_ENTRY,
                 env: Mapping[str, str] | None = None, wrapper: Sequence[str] = (),
                 log_dir: Path | None = None, log_name: str = "daemon-{run}.log") -> None:
        self.config = config
        self.entry = list(entry)
        self.env = dict(env or {})
        self.wrapper = list(wrapper)
        self.log_dir = log_dir if log_dir is not None else config.parent
        self.log_name = log_name
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.log_paths: list[Path] = []
        self.runs = 0
        self._read_up_to = 0  # of the current run's log, for new_lines()

    @property
    def argv(self) -> list[str]:
        return [*self.wrapper, sys.executable, *self.entry, "--config", str(self.config)]

    def start(self, **env: str) -> Self:
        """Start the child (not waiting for it: see :meth:`wait_ready`)."""
        self.runs += 1
        self.log_path = self.log_dir / self.log_name.format(run=self.runs)
        self.log_paths.append(self.log_path)
        self._read_up_to = 0
        environment = {**clean_environment(), **self.env, **env}
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, env=environment)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def exit_code(self) -> int | None:
        """The exit code, None while it runs (or before it started)."""
        return self.process.poll() if self.process is not None else None

    def wait_ready(self, timeout: float = WAIT_SECONDS) -> bool:
        """Whether this run logged ``agent_ready`` within ``timeout`` (False when it exited
        first or the time is up)."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.exited()  # before reading: its last lines are then in the file
            if any(line.get("event") == "agent_ready" for line in self._run_lines()):
                return True
            if exited or time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    # -- its output ------------------------------------------------------------------------

    def output(self) -> str:
        """This run's whole output, as text."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines of every run so far, in order."""
        out: list[dict[str, Any]] = []
        for path in self.log_paths:
            if path.exists():
                out += _json_lines(path.read_bytes())
        return out

    def _run_lines(self) -> list[dict[str, Any]]:
        if self.log_path is None or not self.log_path.exists():
            return []
        return _json_lines(self.log_path.read_bytes())

    def new_lines(self) -> list[dict[str, Any]]:
        """This run's JSON log lines written since the last call (complete lines only while
        the child runs; the rest once it has exited)."""
        if self.log_path is None:
            return []
        exited = self.exited()
        with self.log_path.open("rb") as file:
            file.seek(self._read_up_to)
            data = file.read()
        if not exited:
            data = data[:data.rfind(b"\n") + 1]
        self._read_up_to += len(data)
        return _json_lines(data)

    def last_words(self) -> str | None:
        """This run's last output line that is not a JSON log line (an error, a traceback's
        last line), None if there is none."""
        for line in reversed(self.output().splitlines()):
            text = line.strip()
            if text and not _json_lines(text.encode()):
                return text
        return None

    def logged(self, event: str, **match: Any) -> list[dict[str, Any]]:
        """The lines of every run with this ``event`` and these values."""
        return [line for line in self.lines() if line.get("event") == event
                and all(line.get(k) == v for k, v in match.items())]

    def events(self, name: str) -> list[dict[str, Any]]:
        """The lines that said event ``name`` (``campaign.done``, ...): an ``event`` line, or
        a state transition's own line naming it in ``announces``."""
        return [line for line in self.lines()
                if (line.get("event") == "event" and line.get("name") == name)
                or line.get("announces") == name]

    # -- stopping it -----------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        if self.process is None:
            raise RuntimeError("the daemon was not started")
        self.process.send_signal(sig)

    def stop(self, timeout: float = WAIT_SECONDS) -> int | None:
        """SIGTERM, then wait ``timeout``; SIGKILL if it does not stop. Its exit code (0 when
        never started), None when it had to be killed."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL, if it still runs, and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT_SECONDS)

    def wait_exit(self, timeout: float = WAIT_SECONDS) -> int:
        if self.process is None:
            raise RuntimeError("the daemon was not started")
        return self.process.wait(timeout=timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """``run [--config PATH]`` with the test switches honoured."""
    from .config import load_settings  # noqa: PLC0415
    from .daemon import open_agent  # noqa: PLC0415
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
    agent = open_agent(settings, config_path=args.config, clock=clock_from_environment(),
                       fault_hook=fault_hook_from_environment())
    return asyncio.run(agent.run())


if __name__ == "__main__":
    sys.exit(main())
