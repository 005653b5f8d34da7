"""Running the real ``sftpd-agent run`` process in tests: config, start, wait, stop.

Every wait is bounded in time (``wait_until``) and every loop in count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sftpd_agent.simulator.processing import JournalEntry, read_journal
from tests.servers import SftpServer

WAIT_SECONDS = 30.0


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


@dataclass
class Daemon:
    config: Path
    root: Path
    server: SftpServer
    env: dict[str, str] = field(default_factory=dict)
    wrapper: list[str] = field(default_factory=list)  # e.g. setpriv to drop capabilities
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    runs: int = 0

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def start(self, **env: str) -> Daemon:
        self.runs += 1
        self.log_path = self.config.parent / f"daemon-{self.runs}.log"
        environment = {**os.environ, **self.env, **env}
        environment.pop("SFTPD_AGENT_CONFIG", None)
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [*self.wrapper, sys.executable, "-m", "sftpd_agent.testing", "run",
                 "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, env=environment,
            )
        wait_until(lambda: self.logged("agent_ready") or self.exited(), what="agent_ready")
        assert not self.exited(), self.output()
        return self

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path else ""

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for run in range(1, self.runs + 1):
            path = self.config.parent / f"daemon-{run}.log"
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
        return out

    def logged(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event
                and all(line.get(k) == v for k, v in match.items())]

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.logged("event", name=name)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = WAIT_SECONDS) -> int:
        if self.process is None or self.exited():
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and not self.exited():
            self.process.kill()
            self.process.wait(timeout=WAIT_SECONDS)

    def wait_exit(self, timeout: float = WAIT_SECONDS) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

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
