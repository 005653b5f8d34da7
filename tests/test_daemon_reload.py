"""A reload (SIGHUP) reaches every component: settings are read through one source.

The test changes *every* reloadable key of the configuration at once (all but ``paths``)
and checks that each component sees the new settings; a key added later without a new value
here makes the test fail, so that no key is forgotten.
"""

from __future__ import annotations

import asyncio
import enum
import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sftpd_agent.config import Settings, SettingsSource, load_settings
from sftpd_agent.daemon import Agent
from sftpd_agent.remote.base import Remote
from sftpd_agent.remote.local import LocalRemote
from sftpd_agent.store.journal import Store
from tests.servers import ManualClock

# New values for the keys whose type gives no obvious other value.
NEW: dict[str, Any] = {
    "service_id": "54321", "timezone": "America/Martinique",
    "remote.host": "other.example.net", "remote.username": "other",
    "remote.private_key": "/etc/other/key", "remote.known_hosts": "/etc/other/known",
    "remote.private_key_passphrase": "other", "remote.send_dir": "Out", "remote.report_dir": "In",
    "remote.port": 2222, "campaign.default_sender": "Shop", "campaign.default_region": "BE",
    "campaign.window_days": "Mon-Fri", "campaign.window_start": "09:00",
    "campaign.window_end": "20:00", "campaign.holiday_subdivisions": ["57"],
    "campaign.max_rows_per_file": 500_000, "campaign.max_segments": 3,
    "campaign.max_invalid_percent": 7.5, "campaign.stop_mention": "STOP au 36111",
    "campaign.sender_blocklist": ["PROMO"], "campaign.stop_mention_policy": "append",
    "reports.stop_keywords": ["STOP"], "metrics.textfile": "/tmp/agent.prom",
    "notify.email": {"smtp_host": "mail.example.net", "to": ["ops@example.net"]},
    "notify.hooks": [{"events": ["campaign.held"], "command": ["/bin/true"]}],
}


def _other(key: str, value: Any, annotation: Any) -> Any:
    if key in NEW:
        return NEW[key]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value + 1
    if isinstance(value, enum.Enum):
        return next(m.value for m in type(value) if m != value)
    options = [a for a in typing.get_args(annotation) if isinstance(a, str)]
    if typing.get_origin(annotation) is typing.Literal and value in options:
        return next(option for option in options if option != value)
    raise AssertionError(f"no new value for {key} = {value!r}: add one to NEW")


def _changed(model: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Every field of ``model`` (but paths) with another valid value."""
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        key = f"{prefix}{name}"
        if key == "paths":
            continue
        value = getattr(model, name)
        if isinstance(value, BaseModel) and key not in NEW:
            out[name] = _changed(value, f"{key}.")
        else:
            plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            out[name] = _other(key, plain, field.annotation)
    return out


def _write(path: Path, data: dict[str, Any]) -> None:
    lines = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for name, table in tables:
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        arrays = {k: v for k, v in table.items()
                  if isinstance(v, list) and v and isinstance(v[0], dict)}
        lines.append(f"[{name}]")
        for key, value in table.items():
            if key not in nested and key not in arrays:
                lines.append(f"{key} = {json.dumps(value, default=str)}")
        for key, value in nested.items():
            lines.append(f"[{name}.{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
        for key, items in arrays.items():
            for item in items:
                lines.append(f"[[{name}.{key}]]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def _nowhere(settings: Settings) -> Remote:
    return LocalRemote(Path(settings.paths.root) / "remote")


def test_a_reload_reaches_every_component_and_every_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    _write(config, {"service_id": "12345", "paths": {"root": str(tmp_path / "agent")}})
    first = load_settings(config)
    source = SettingsSource(first, str(config))
    store = Store(first.paths.state_db)
    agent = Agent(source, store=store, connect=_nowhere, clock=ManualClock())

    async def reload() -> None:
        agent.scheduler.start(paused=True)
        agent.scheduler.add_job(agent._wake_job, "interval", seconds=30, id="poll")
        changed = {**_changed(first), "paths": {"root": str(tmp_path / "agent")}}
        _write(config, changed)
        agent._request_reload()
        agent.scheduler.shutdown(wait=False)

    asyncio.run(reload())
    new = agent.settings
    assert new is not first and new == load_settings(config)
    for section in ("remote", "campaign", "reports", "metrics", "notify"):
        assert getattr(new, section) != getattr(first, section), section
    assert new.service_id == "54321" and new.timezone == "America/Martinique"
    # Each component reads the settings in force.
    assert agent.campaigns.settings is new
    assert agent.reports.settings is new
    assert agent.notifications.settings() is new
    assert agent.publisher.send_dir == "Out"
    assert agent.outbox.stable_seconds == first.campaign.stable_seconds + 1
    base = new.remote.retry_base_seconds
    assert base / 2 <= agent.session.backoff.delay(1) <= base
    assert agent.session.backoff.delay(1, permanent=True) == new.remote.permanent_retry_seconds
    store.close()


def test_a_reload_with_a_bad_file_keeps_the_settings(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    _write(config, {"service_id": "12345", "paths": {"root": str(tmp_path / "agent")}})
    first = load_settings(config)
    source = SettingsSource(first, str(config))
    config.write_text("service_id = 12\n[remote]\nport = 0\n", encoding="utf-8")
    store = Store(first.paths.state_db)
    agent = Agent(source, store=store, connect=_nowhere, clock=ManualClock())
    agent._request_reload()
    assert agent.settings is first and agent.campaigns.settings is first
    store.close()
