"""Settings: one TOML file, environment overrides, systemd credentials for secrets.

Precedence, highest first: ``SFTPD_AGENT_<SECTION>__<KEY>`` environment variables, files in
``$CREDENTIALS_DIRECTORY`` (``smtp_password``, ``key_passphrase``), the TOML file, defaults.
Every problem becomes a :class:`ConfigError` whose one-line message names the key and never
repeats a secret's value.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .errors import ConfigError
from .rules.compliance import (
    DEFAULT_SENDER_BLOCKLIST,
    OptoutPolicy,
    blocklist_key,
    mention_problem,
    resolve_policy,
    sender_problem,
)
from .rules.gsm import Policy, count
from .rules.window import MarketingWindow

DEFAULT_CONFIG = Path("/etc/sftpd-agent/agent.toml")
CONFIG_ENV = "SFTPD_AGENT_CONFIG"
ENV_PREFIX = "SFTPD_AGENT_"

EVENTS = frozenset({
    "campaign.received", "campaign.held", "campaign.scheduled", "campaign.published",
    "campaign.done", "campaign.rejected", "campaign.overdue", "campaign.reported",
    "optout.received", "reply.received", "remote.unreachable", "remote.recovered",
})

# credential file name -> (section path, key)
CREDENTIALS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "smtp_password": (("notify", "email"), "password"),
    "key_passphrase": (("remote",), "private_key_passphrase"),
}

_ALNUM = re.compile(r"[A-Za-z0-9]+")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RemoteSettings(_Section):
    host: str = ""
    port: int = Field(22, ge=1, le=65535)
    username: str = ""
    private_key: Path = Path("/etc/sftpd-agent/id_ed25519")
    private_key_passphrase: SecretStr | None = None
    known_hosts: Path = Path("/etc/sftpd-agent/known_hosts")
    send_dir: str = "Send"
    report_dir: str = "Report"
    poll_seconds: float = Field(30, gt=0)
    connect_timeout_seconds: float = Field(15, gt=0)
    operation_timeout_seconds: float = Field(120, gt=0)
    keepalive_seconds: float = Field(15, gt=0)
    retry_base_seconds: float = Field(1, gt=0)
    retry_ceiling_seconds: float = Field(300, gt=0)
    permanent_retry_seconds: float = Field(600, gt=0)


class PathsSettings(_Section):
    root: Path = Path("/var/lib/sftpd-agent")
    retention_days: int = Field(90, ge=1)

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def state_db(self) -> Path:
        return self.root / "state.db"


class CampaignSettings(_Section):
    """The ``[campaign]`` keys. Fields are validated in order: a key checked against others
    comes after them (``default_sender`` after ``marketing`` and ``sender_blocklist``)."""

    default_region: str = "FR"
    max_segments: int = Field(5, ge=1, le=10)
    non_gsm: Policy = Policy.TRANSLITERATE
    max_invalid_percent: float = Field(5.0, ge=0, le=100)
    max_rows_per_file: int = Field(1_000_000, ge=1, le=1_000_000)
    marketing: bool = True
    sender_blocklist: tuple[str, ...] = DEFAULT_SENDER_BLOCKLIST
    default_sender: str = ""
    stop_mention: str = ""
    stop_mention_policy: OptoutPolicy | None = None
    window_days: str = "Mon-Sat"
    window_start: str = "08:00"
    window_end: str = "21:30"
    holiday_subdivisions: tuple[str, ...] = ()
    outside_window: Literal["next_window", "hold"] = "next_window"
    recipient_local_window: bool = True  # marketing: overseas numbers get their own hours
    foreign: Literal["send", "hold", "drop"] = "send"  # numbers of other countries
    upload_lead_minutes: int = Field(10, ge=0)
    stale_after_minutes: int = Field(60, ge=0)
    stable_seconds: float = Field(2, ge=0)
    contacts_grace_seconds: float = Field(300, ge=0)  # a contact export waits for its manifest
    outcome_timeout_minutes: int = Field(30, ge=1)

    @field_validator("default_sender")
    @classmethod
    def _sender(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("marketing", True):
            problem = sender_problem(value, blocklist_key(info.data.get("sender_blocklist", ())))
            if problem is not None:
                code, _ = problem
                raise ValueError(
                    "a French mobile number cannot send marketing SMS (forbidden since 2019)"
                    if code == "oadc_mobile" else
                    "a generic sender that operators block (listed in sender_blocklist)")
        if value and not (
            (value.isdigit() and len(value) <= 15) or (_ALNUM.fullmatch(value) and len(value) <= 11)
        ):
            raise ValueError("must be 1-11 letters/digits (no accents or spaces) or up to "
                             "15 digits")
        return value

    @field_validator("stop_mention")
    @classmethod
    def _stop_mention(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        problem = mention_problem(value)
        if problem is None and value:
            policy = info.data.get("non_gsm", Policy.TRANSLITERATE)
            unsendable = count(value, policy).unsendable
            if unsendable:
                problem = (f"{unsendable[0]!r} cannot be sent under non_gsm = {policy}: "
                           "every message would be invalid")
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("stop_mention_policy")
    @classmethod
    def _stop_mention_policy(cls, value: OptoutPolicy | None,
                             info: ValidationInfo) -> OptoutPolicy | None:
        if value == "append" and not info.data.get("stop_mention", "x"):
            raise ValueError('"append" needs the text to append: set stop_mention')
        return value

    @property
    def optout_policy(self) -> OptoutPolicy:
        """``stop_mention_policy`` in force: as set, else append when ``stop_mention`` is
        set, else require for marketing campaigns and off for transactional ones."""
        return resolve_policy(self.stop_mention_policy, self.stop_mention, self.marketing)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers  # noqa: PLC0415  (heavy; only when a config is loaded)

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}")
        return value.upper()

    def window(self) -> MarketingWindow:
        return MarketingWindow.parse(
            self.window_days, self.window_start, self.window_end, self.holiday_subdivisions
        )


class ReportsSettings(_Section):
    delete_remote_after_ingest: bool = True
    stop_keywords: tuple[str, ...] = ("STOP", "ARRET", "ARRÊT", "UNSUBSCRIBE")


class MetricsSettings(_Section):
    textfile: str = ""

    @field_validator("textfile")
    @classmethod
    def _prom(cls, value: str) -> str:
        if value and not value.endswith(".prom"):
            raise ValueError("must end in .prom (node_exporter's textfile collector reads "
                             "only those)")
        return value


def _check_events(events: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(events) - EVENTS)
    if unknown:
        raise ValueError(f"unknown event {unknown[0]!r}")
    return events


class EmailSettings(_Section):
    smtp_host: str = "localhost"
    smtp_port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    tls: bool = False
    username: str = ""
    password: SecretStr = SecretStr("")
    sender: str = "sftpd-agent@localhost"
    to: tuple[str, ...] = ()
    events: tuple[str, ...] = (
        "campaign.held", "campaign.rejected", "campaign.done", "campaign.reported",
        "remote.unreachable",
    )
    timeout_seconds: float = Field(30, gt=0)

    _events = field_validator("events")(_check_events)


class HookSettings(_Section):
    events: tuple[str, ...]
    command: tuple[str, ...] = Field(min_length=1)
    timeout_seconds: float = Field(30, gt=0)

    _events = field_validator("events")(_check_events)


class NotifySettings(_Section):
    email: EmailSettings | None = None
    hooks: tuple[HookSettings, ...] = ()


class Settings(BaseSettings):
    """The whole configuration; see ``config/agent.example.toml`` for every key."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    service_id: str = "00000"
    timezone: str = "Europe/Paris"
    remote: RemoteSettings = RemoteSettings()
    paths: PathsSettings = PathsSettings()
    campaign: CampaignSettings = CampaignSettings()
    reports: ReportsSettings = ReportsSettings()
    metrics: MetricsSettings = MetricsSettings()
    notify: NotifySettings = NotifySettings()

    @field_validator("service_id")
    @classmethod
    def _service_id(cls, value: str) -> str:
        if len(value) != 5 or not _ALNUM.fullmatch(value):
            raise ValueError("must be exactly 5 letters or digits")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init arguments; the environment overrides it.
        return (_AgentEnvSource(settings_cls), init_settings)


class _AgentEnvSource(EnvSettingsSource):
    """The environment, without ``SFTPD_AGENT_CONFIG`` (the file's path, not a setting)."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        data.pop("config", None)
        return data


def config_path(explicit: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The configuration file to read, and whether it was asked for explicitly."""
    if explicit:
        return Path(explicit), True
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env), True
    return DEFAULT_CONFIG, False


def load_settings(
    path: str | os.PathLike[str] | None = None, *, required: bool = True
) -> Settings:
    """Read, merge and validate the configuration.

    With ``required=False`` a missing default file yields the defaults (for offline commands
    such as ``count``); a file named explicitly must always exist.
    """
    file, explicit = config_path(path)
    data: dict[str, Any] = {}
    if file.exists():
        data = _read_toml(file)
    elif explicit or required:
        hint = "" if explicit else f" (use --config or ${CONFIG_ENV})"
        raise ConfigError(f"configuration file {file} not found{hint}")
    _merge_credentials(data, os.environ.get("CREDENTIALS_DIRECTORY"))
    try:
        settings = Settings(**data)
        settings.campaign.window()
    except ValidationError as exc:
        raise ConfigError(f"{file}: {describe_validation_error(exc)}") from None
    except ValueError as exc:
        raise ConfigError(f"{file}: campaign: {exc}") from None
    return settings


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read: {exc.strerror}") from None


def _merge_credentials(data: dict[str, Any], directory: str | None) -> None:
    """Fill secrets from systemd credentials where the file and environment leave them unset."""
    if not directory:
        return
    for name, (section, key) in CREDENTIALS.items():
        credential = Path(directory) / name
        if not credential.is_file():
            continue
        if section == ("notify", "email") and "email" not in data.get("notify", {}):
            continue  # no e-mail configured: a stray password enables nothing
        target = data
        for part in section:
            target = target.setdefault(part, {})
        if not target.get(key):
            target[key] = credential.read_text(encoding="utf-8").rstrip("\r\n")


_SECRET_KEYS = ("password", "passphrase", "secret", "token")


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the first bad key, with the value unless the key is a secret."""
    error = exc.errors(include_url=False)[0]
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {key}"
    if error["type"] == "missing":
        return f"missing key {key}"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if any(word in key.lower() for word in _SECRET_KEYS) or isinstance(value, dict | list):
        return f"{key}: {message}"
    return f"{key}: {message} (got {value!r})"


class SettingsSource:
    """The settings in force, as one object every component reads through at the moment it
    needs them: a reload (SIGHUP) swaps them here and reaches every component at once, a
    component added later included (nobody keeps a copy to be pushed)."""

    def __init__(self, settings: Settings, path: str | None = None) -> None:
        self._current = settings
        self.path = path

    def __call__(self) -> Settings:
        return self._current

    def reload(self) -> bool:
        """Read the file again; True when ``paths`` changed and were kept as they are (they
        take effect at the next start). Raises ConfigError, the settings unchanged."""
        settings = load_settings(self.path)
        kept = settings.paths != self._current.paths
        if kept:
            settings = settings.model_copy(update={"paths": self._current.paths})
        self._current = settings
        return kept


SettingsLike = Settings | Callable[[], Settings]
"""What components take: a :class:`SettingsSource` (the daemon), or fixed settings (tests,
one-shot commands)."""


def settings_getter(settings: SettingsLike) -> Callable[[], Settings]:
    """The settings in force when called, whichever kind ``settings`` is."""
    if isinstance(settings, Settings):
        return lambda: settings
    return settings
