"""What the demo puts in its temporary folder: SSH keys, the agent's configuration, the
simulated provider's options, and the simulator's log lines."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import private_file
from .samples import SENDER

if TYPE_CHECKING:
    from ..simulator import SimulatorOptions

SERVICE_ID = "12345"
USERNAME = "demo"
POLL_SECONDS = 0.5


def make_keys(keys: Path) -> tuple[Path, Path]:
    """In the new folder ``keys`` (0700): the agent's ed25519 key pair (private 0600), its
    ``authorized_keys`` and the server's host key. ``(authorized_keys, host key)``; raises
    OSError or asyncssh.Error."""
    import asyncssh  # noqa: PLC0415

    keys.mkdir(mode=0o700)
    client = asyncssh.generate_private_key("ssh-ed25519")
    _write_private(keys / "id_ed25519", client.export_private_key("openssh"))
    public = client.export_public_key("openssh").decode().strip()
    (keys / "id_ed25519.pub").write_text(public + "\n", encoding="utf-8")
    (keys / "authorized_keys").write_text(public + "\n", encoding="utf-8")
    host = asyncssh.generate_private_key("ssh-ed25519")
    _write_private(keys / "ssh_host_ed25519_key", host.export_private_key("openssh"))
    return keys / "authorized_keys", keys / "ssh_host_ed25519_key"


def _write_private(path: Path, data: bytes) -> None:
    with os.fdopen(private_file(path), "wb") as file:
        file.write(data)


def simulator_options() -> SimulatorOptions:
    """The simulated provider, fast: a file stays ``.lock`` 2 s (the agent, polling every
    0.5 s, sees it), the ACK comes 1.5 s after ``.done``, opt-outs and replies in 2 steps 2 s
    apart. On the 36 valid rows of the sample: 2 failed, 2 STOP, 2 replies (each may be an
    opt-out word), whatever the run."""
    from ..simulator import SimulatorOptions  # noqa: PLC0415

    return SimulatorOptions(
        service_id=SERVICE_ID, seed=2026, lock_seconds=2.0, ack_delay=1.5,
        ack_failure_share=0.05, stop_share=0.06, mo_share=0.06, report_steps=2,
        report_interval=2.0, rewrite_step=0)


def demo_config(folder: Path, port: int,
                overrides: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The agent's configuration for the demo: the simulator, fast timings, any day, any hour."""
    sections: dict[str, dict[str, Any]] = {
        "remote": {
            "host": "127.0.0.1", "port": port, "username": USERNAME,
            "private_key": str(folder / "keys" / "id_ed25519"),
            "known_hosts": str(folder / "keys" / "known_hosts"),
            "poll_seconds": POLL_SECONDS, "connect_timeout_seconds": 5,
            "operation_timeout_seconds": 10, "keepalive_seconds": 5,
            "retry_base_seconds": 0.5, "retry_ceiling_seconds": 2,
            "permanent_retry_seconds": 5,
        },
        "paths": {"root": str(folder / "agent")},
        "campaign": {
            "default_sender": SENDER, "marketing": False, "stable_seconds": 0.2,
            "max_invalid_percent": 10.0,
        },
    }
    for name, values in (overrides or {}).items():
        sections.setdefault(name, {}).update(values)
    return _toml(sections)


def _toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [f'service_id = "{SERVICE_ID}"', 'timezone = "Europe/Paris"']
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}"
                  for key, value in values.items()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def simulator_logs(path: Path) -> Iterator[None]:
    """The simulator's log lines into ``path`` (not on the screen), for the demo's duration."""
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    saved = structlog.get_config()
    asyncssh_logger = logging.getLogger("asyncssh")
    saved_propagate = asyncssh_logger.propagate
    with path.open("a", encoding="utf-8") as file:
        handler = logging.StreamHandler(file)
        structlog.configure(
            processors=[structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso"),
                        structlog.processors.JSONRenderer(ensure_ascii=False)],
            logger_factory=structlog.WriteLoggerFactory(file),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=False,
        )
        asyncssh_logger.addHandler(handler)
        asyncssh_logger.propagate = False
        try:
            yield
        finally:
            asyncssh_logger.removeHandler(handler)
            asyncssh_logger.propagate = saved_propagate
            structlog.configure(**saved)
