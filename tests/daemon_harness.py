"""Running the real agent process in tests: config, start, wait, stop.

The process itself is :class:`sftpd_agent.testing.DaemonProcess` (shared with the demo);
:class:`Daemon` adds what only tests need. Every wait is bounded in time (``wait_until``) and
every loop in count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import pytest

from sftpd_agent.simulator.processing import JournalEntry, read_journal
from sftpd_agent.testing import WAIT_SECONDS, DaemonProcess
from tests.servers import SftpServer


def wait_until(condition: Callable[[], Any], timeout: float = WAIT_SECONDS,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    value = condition()  # once more: the deadline may have passed during a pause
    if value:
        return value
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def write_config(folder: Path, server: SftpServer, **sections: dict[str, Any]) -> Path:
    """An agent.toml for ``server`` with fast test timings; ``sections`` override keys."""
    base: dict[str, dict[str, Any]] = {
        "remote": {
            "host": server.host, "port": server.port, "username": server.username,
            "private_key": str(server.client_key), "known_hosts": str(server.known_hosts),
            "poll_seconds": 0.3, "connect_timeout_seconds": 5,
            "operation_timeout_seconds": 10, "keepalive_seconds": 5,
        },
        "paths": {"root": str(folder / "agent")},
        "campaign": {"marketing": False, "stable_seconds": 0.4, "upload_lead_minutes": 10},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = ['service_id = "12345"', 'timezone = "Europe/Paris"']
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = folder / "agent.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Daemon(DaemonProcess):
    """The agent (``python -m sftpd_agent.testing run``) against a test ``server``, with the
    test-only parts: its outbox, the server's journal, ``status``; :meth:`start` waits for
    ``agent_ready`` and fails the test when the agent exits first."""

    def __init__(self, config: Path, root: Path, server: SftpServer,
                 env: dict[str, str] | None = None, wrapper: list[str] | None = None) -> None:
        super().__init__(config, env=env, wrapper=wrapper or ())
        self.root = root
        self.server = server

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def start(self, **env: str) -> Self:
        super().start(**env)
        if not self.wait_ready(WAIT_SECONDS):
            assert self.exited(), f"timed out after {WAIT_SECONDS:.0f} s waiting for " \
                                  f"agent_ready:\n{self.output()}"
            raise AssertionError(self.output())
        return self

    def journal(self) -> list[JournalEntry]:
        return read_journal(self.server.processor.journal_path)

    def drop(self, name: str, text: str | bytes) -> Path:
        """Drop a file the way a careful program does: write aside, then rename in."""
        data = text.encode() if isinstance(text, str) else text
        temporary = self.outbox / f".{name}.writing"
        temporary.write_bytes(data)
        target = self.outbox / name
        temporary.rename(target)
        return target

    def status(self) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "sftpd_agent", "status", "--json", "--config",
             str(self.config)], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode in (0, 1), done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def campaign(self, campaign_id: str) -> dict[str, Any] | None:
        for campaign in self.status()["campaigns"]:
            if campaign["campaign_id"] == campaign_id:
                return campaign
        return None

    def state(self, campaign_id: str) -> str | None:
        found = self.campaign(campaign_id)
        return found["state"] if found else None


def rows(count: int, *, start: int = 0, prefix: str = "R", message: str = "Bonjour") -> str:
    return "".join(f"{prefix}{i};+3361{i:07d};Shop;{message} {i}\r\n"
                   for i in range(start, start + count))


def running(daemon: Daemon) -> Daemon:
    return daemon.start()


@pytest.fixture
def daemon(tmp_path: Path, openssh: SftpServer) -> Iterator[Daemon]:
    """The real daemon against the test's sshd, with the test timings; killed at the end.
    (A test module may define its own ``daemon`` fixture: a wrapper, other settings.)"""
    config = write_config(tmp_path, openssh)
    agent = Daemon(config, tmp_path / "agent", openssh)
    yield agent
    agent.kill()
