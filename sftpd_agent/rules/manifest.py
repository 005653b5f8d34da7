"""Campaign manifests: ``<name>.campaign.toml`` beside a contacts file in the outbox.

::

    contacts = "clients-decembre.csv"        # a file beside the manifest
    message = "Bonjour {Prénom}, -20 % à {Ville} ce week-end !"
    campaign = "noel"                        # optional, as every key below
    send_at = 2026-12-05 10:00:00            # local time (the configured zone), or with offset
    sender = "MAGASIN"
    marketing = true
    stop_mention = "STOP au 36111"
    delimiter = ";"                          # ";", ",", "\\t" or "tab"; default: detected

    [columns]
    phone = "Portable"                       # default: found by its header
    id = "Client ID"

Read with :func:`read_manifest` (every error one line naming the file, the key and what is
expected, for ``failed/``), written with :func:`write_manifest` (``submit``). Pure but for the
file read or written.
"""

from __future__ import annotations

import datetime
import difflib
import re
import tomllib
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError, field_validator

from .naming import safe_campaign_id

MANIFEST_SUFFIX = ".campaign.toml"
MAX_MANIFEST_BYTES = 64 * 1024
CONTACTS_SUFFIXES = (".csv", ".txt")

EXPECTED = {
    "contacts": 'the name of the contacts file beside the manifest, e.g. contacts = "clients.csv"',
    "message": 'the message, e.g. message = "Bonjour {Prénom}, ..."',
    "campaign": 'a campaign name of letters and digits, e.g. campaign = "noel"',
    "send_at": "a local date and time, e.g. send_at = 2026-12-05 10:00:00 "
               'or send_at = "2026-12-05 10:00"',
    "sender": 'the sender name, e.g. sender = "MAGASIN"',
    "marketing": "true or false",
    "stop_mention": 'the opt-out text, e.g. stop_mention = "STOP au 36111"',
    "delimiter": "one of \";\", \",\", \"tab\"",
    "columns": "a table: [columns] with phone = \"...\" and id = \"...\"",
    "columns.phone": 'the header of the phone column, e.g. phone = "Portable"',
    "columns.id": 'the header of the CRM id column, e.g. id = "Client ID"',
}

_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message is one line naming the file."""


class Columns(BaseModel):
    """Which columns hold what, when their headers do not say it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    phone: str | None = None
    id: str | None = None

    @field_validator("phone", "id")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must name a column, not be empty")
        return value


class Manifest(BaseModel):
    """One campaign described by a manifest; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    contacts: str
    message: str
    campaign: str | None = None
    send_at: datetime.datetime | None = None
    """Naive: a local time in the configured zone (Europe/Paris); aware: that instant."""
    sender: str | None = None
    marketing: StrictBool | None = None
    stop_mention: str | None = None
    delimiter: Literal[";", ",", "\t", "tab"] | None = None
    columns: Columns = Columns()

    @field_validator("contacts")
    @classmethod
    def _contacts_name(cls, value: str) -> str:
        name = value.strip()
        if not name:
            raise ValueError("is empty")
        if "/" in name or "\\" in name or name.startswith(".") or ".." in name:
            raise ValueError(f"{value!r} must be a file name beside the manifest, without "
                             "a folder, '..' or a leading '.'")
        if any(ord(char) < 32 or ord(char) == 127 for char in name):
            raise ValueError(f"{value!r} holds a control character")
        if not name.lower().endswith(CONTACTS_SUFFIXES):
            raise ValueError(f"{value!r} must end in .csv or .txt")
        return name

    @field_validator("message")
    @classmethod
    def _message(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty")
        return value

    @field_validator("campaign")
    @classmethod
    def _campaign(cls, value: str | None) -> str | None:
        if value is None:
            return None
        campaign, _ = safe_campaign_id(value)
        if not campaign:
            raise ValueError(f"{value!r} has no ASCII letter or digit")
        return campaign

    @field_validator("send_at", mode="before")
    @classmethod
    def _send_at(cls, value: object) -> object:
        if value is None or isinstance(value, datetime.datetime):
            return value
        if isinstance(value, str):
            try:
                return datetime.datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not a date and time") from None
        if isinstance(value, datetime.date):
            # ValueError, not TypeError: pydantic reports only the former as a field's error.
            raise ValueError(f"{value.isoformat()} has no time of day")  # noqa: TRY004
        raise ValueError(f"{value!r} is not a date and time")

    @property
    def delimiter_char(self) -> str | None:
        """The delimiter as a character (``"tab"`` is ``"\\t"``), None: to be detected."""
        return "\t" if self.delimiter == "tab" else self.delimiter

    def contacts_path(self, manifest_path: Path) -> Path:
        """The contacts file this manifest names, beside it."""
        return manifest_path.with_name(self.contacts)


def is_manifest_name(name: str) -> bool:
    """Whether ``name`` is a manifest's (``*.campaign.toml``, not hidden)."""
    return name.lower().endswith(MANIFEST_SUFFIX) and not name.startswith(".") and (
        len(name) > len(MANIFEST_SUFFIX))


def manifest_stem(name: str) -> str:
    """``noel.campaign.toml`` -> ``noel``: the campaign's name when the manifest gives none."""
    return name[:-len(MANIFEST_SUFFIX)] if is_manifest_name(name) else name


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path``; :class:`ManifestError` (one line, naming the file) if it
    cannot be read or is not valid."""
    name = path.name
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"{name}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{name}: larger than {MAX_MANIFEST_BYTES // 1024} KiB: a manifest "
                            "names the contacts file, it does not hold the contacts")
    return parse_manifest(data, name)


def parse_manifest(data: bytes, name: str = "manifest") -> Manifest:
    """The manifest in ``data`` (the bytes of a file called ``name``)."""
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ManifestError(f"{name}: line {line}: byte 0x{data[exc.start]:02X} is not UTF-8: "
                            "save the manifest as UTF-8") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{name}: {_toml_reason(str(exc))}") from None
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        raise ManifestError(f"{name}: {_pydantic_reason(exc)}") from None


def _toml_reason(message: str) -> str:
    where = ""
    if match := _TOML_WHERE.search(message):
        where = f"line {match[1]}, column {match[2]}: "
        message = message[:match.start()]
    elif match := _TOML_END.search(message):
        where = "at the end: "
        message = message[:match.start()]
    hint = ""
    if "Illegal character '\\n'" in message or "Unterminated string" in message:
        hint = ('; a text on several lines goes between triple quotes: message = """...""", '
                "and a double quote inside a text is written \\\"")
    elif "Invalid value" in message or "Expected '=' after a key" in message:
        hint = '; texts go between double quotes, e.g. sender = "MAGASIN"'
    return where + message[:1].lower() + message[1:] + hint


def _pydantic_reason(exc: ValidationError) -> str:
    # An unknown key first: a misspelt key also shows up as a missing one.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    reason = _one_error(first)
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return reason


def _one_error(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    value = error.get("input")
    expected = EXPECTED.get(location, "")
    if kind == "extra_forbidden":
        table = Columns if location.startswith("columns.") else Manifest
        keys = ", ".join(table.model_fields)
        close = difflib.get_close_matches(str(error["loc"][-1]), list(table.model_fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"key {location!r} is not known (keys: {keys}){hint}"
    if kind == "missing":
        return f"key {location!r} is missing: {expected}"
    if kind == "value_error":
        detail = str(error["msg"]).removeprefix("Value error, ")
        return f"key {location!r}: {detail}; expected {expected}"
    if kind == "literal_error":
        return f"key {location!r} is {value!r}: expected {expected}"
    shown = f"{value!r}" if not isinstance(value, dict) else "a table"
    return f"key {location!r} is {shown}: expected {expected or error['msg']}"


# -- Writing ---------------------------------------------------------------------------------


def manifest_text(manifest: Manifest) -> str:
    """``manifest`` as TOML that :func:`read_manifest` reads back equal."""
    lines = []
    for key in ("contacts", "message", "campaign", "send_at", "sender", "marketing",
                "stop_mention", "delimiter"):
        value = getattr(manifest, key)
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    columns = [(key, getattr(manifest.columns, key)) for key in Columns.model_fields]
    if any(value is not None for _, value in columns):
        lines += ["", "[columns]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in columns if value is not None]
    return "\n".join(lines) + "\n"


def write_manifest(target: Path | IO[str] | None, manifest: Manifest) -> str:
    """Write ``manifest`` as TOML to ``target`` (a path, written as UTF-8, or a text stream;
    None: nowhere), and return the text."""
    text = manifest_text(manifest)
    if isinstance(target, Path):
        target.write_text(text, encoding="utf-8")
    elif target is not None:
        target.write(text)
    return text


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, str):
        return '"' + "".join(_escape(char) for char in value) + '"'
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if ord(char) < 32 or ord(char) == 127:
        return f"\\u{ord(char):04X}"
    return char


def claimed_contacts(outbox: Path) -> dict[str, Path]:
    """Contacts file name -> the manifest naming it, for every readable manifest in
    ``outbox`` (in name order: the first manifest to name a file keeps it). Never raises."""
    claimed: dict[str, Path] = {}
    try:
        names = sorted(entry.name for entry in outbox.iterdir())
    except OSError:
        return claimed
    for name in names:
        if not is_manifest_name(name):
            continue
        try:
            manifest = read_manifest(outbox / name)
        except (ManifestError, OSError, ValueError):
            continue
        claimed.setdefault(manifest.contacts, outbox / name)
    return claimed
