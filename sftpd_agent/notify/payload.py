"""What a notification may carry: the event's payload, and error strings without secrets.

Pure. The payload is what a hook reads on stdin and an e-mail is made of. Personal data:
numbers in it are masked (``rules/masking``), reply texts are left out (their length and, for
an opt-out, the stop keyword remain); file names are kept as they are (a path is not personal
data and must stay usable). Secrets: :func:`scrub` takes every configured password and
passphrase out of an error string before it reaches a log line, the journal or an e-mail.
"""

from __future__ import annotations

import base64
import datetime
import enum
from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from ..rules.display import one_line
from ..rules.masking import mask, mask_numbers

if TYPE_CHECKING:
    from ..config import Settings
    from ..store.records import Campaign

ERROR_CHARS = 300  # an error string, on one line

# Keys of event data: phone numbers (masked), lists of them, texts (dropped: length kept),
# and file names (kept as they are: a path is not personal data and must stay usable).
_NUMBER_KEYS = frozenset({"msisdn", "number"})
_NUMBER_LIST_KEYS = frozenset({"numbers", "msisdns"})
_TEXT_KEYS = frozenset({"message", "msg", "text", "body", "reply"})
_PATH_KEYS = frozenset({"file", "errors_file", "reason_file", "source", "remote_name",
                        "remote_names", "path", "report", "results_file"})
_KEYWORD_CHARS = 20


def event_payload(
    event: str, *, at: datetime.datetime, campaign: Campaign | None, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The event as a JSON-safe object: what a hook reads on stdin and an e-mail is made of."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    return {
        "event": event,
        "at": at.isoformat(timespec="seconds"),
        "campaign": None if campaign is None else _campaign_object(campaign, data),
        "data": {str(key): _safe(str(key), value) for key, value in data.items()},
    }


def _campaign_object(campaign: Campaign, data: Mapping[str, Any]) -> dict[str, Any]:
    summary = campaign.summary
    names = data.get("remote_names") or summary.get("remote_names") or []
    return {
        "campaign_id": campaign.campaign_id,
        "file": campaign.file,
        "state": str(campaign.state),
        "received_at": _iso(campaign.received_at),
        "send_at": _iso(campaign.send_at),
        **campaign.figures(),
        "reason": campaign.reason,
        "invalid_by_code": {str(k): int(v) for k, v in
                            dict(summary.get("invalid_by_code") or {}).items()},
        "transliterated": {str(k): int(v) for k, v in
                           dict(summary.get("transliterated") or {}).items()},
        "acks": {str(k): int(v) for k, v in dict(summary.get("acks") or {}).items()},
        "remote_names": [str(name) for name in names],
    }


def _iso(when: datetime.datetime | None) -> str | None:
    return when.isoformat(timespec="seconds") if when is not None else None


def _safe(key: str, value: Any) -> Any:
    """``value`` JSON-safe, numbers masked, texts left out (see the module's docstring)."""
    lowered = key.lower()
    if isinstance(value, str):
        if lowered in _NUMBER_KEYS:
            return mask(value)
        if lowered in _PATH_KEYS:
            return value
        return mask_numbers(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _safe(key, value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return _safe_mapping(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        if lowered in _NUMBER_LIST_KEYS:
            return [mask(str(item)) if isinstance(item, str) else _safe(key, item)
                    for item in items]
        return [_safe(key, item) for item in items]
    return _safe(key, str(value))


def _safe_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, item in value.items():
        key = str(raw_key)
        if key.lower() in _TEXT_KEYS and isinstance(item, str):
            out[f"{key}_length"] = len(item)
            if value.get("opt_out") and len(item.strip()) <= _KEYWORD_CHARS:
                out["keyword"] = item.strip().upper()  # a stop keyword, not a personal text
        else:
            out[key] = _safe(key, item)
    return out


# -- secrets out of error strings ------------------------------------------------------


def scrub(error: str, settings: Settings) -> str:
    """``error`` on one line, without any configured secret (servers echo what they got)."""
    return one_line(redact(" ".join(error.split()), settings), ERROR_CHARS)


def redact(text: str, settings: Settings) -> str:
    """``text`` with every configured secret (and the SMTP login's base64 forms) as ``***``."""
    secrets: list[str] = []
    email = settings.notify.email
    if email is not None and email.password.get_secret_value():
        password = email.password.get_secret_value()
        secrets += [password, base64.b64encode(password.encode()).decode(),
                    base64.b64encode(f"\0{email.username}\0{password}".encode()).decode()]
    passphrase = settings.remote.private_key_passphrase
    if passphrase is not None and passphrase.get_secret_value():
        secrets.append(passphrase.get_secret_value())
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
