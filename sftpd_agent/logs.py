"""Logging: structlog for our events, the standard library's loggers routed through it.

JSON lines on stdout when stdout is not a terminal (journald, files), coloured key=value lines
on a terminal. Personal data never leaves whole: phone numbers are masked wherever they appear
in a string, message texts are replaced by their length, secrets by ``***``.
"""

from __future__ import annotations

import logging
import sys
from contextlib import AbstractContextManager
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

from .rules.masking import mask_numbers

# Keys whose values are message texts (personal data) or secrets.
_TEXT_KEYS = frozenset({"msg", "message", "text", "body", "reply"})
_SECRET_KEYS = frozenset({"password", "passphrase", "private_key_passphrase", "secret", "token"})
def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_numbers(value)
    if isinstance(value, list | tuple):
        return type(value)(_scrub(item) for item in value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    return value


def redact(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Mask phone numbers, drop message texts and secrets from every log line."""
    for key, value in list(event_dict.items()):
        lowered = key.lower()
        if lowered in _SECRET_KEYS:
            event_dict[key] = "***"
        elif lowered in _TEXT_KEYS and isinstance(value, str):
            event_dict[key] = f"<{len(value)} characters>"
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=False),
        structlog.stdlib.ExtraAdder(),
        redact,
    ]


def configure(
    *, level: str = "INFO", stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Set up structlog and the standard library's root logger once, at start-up.

    ``json=None`` chooses from the stream: JSON unless it is a terminal.
    """
    out = stream if stream is not None else sys.stdout
    as_json = not out.isatty() if json is None else json
    renderer: Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that log each poll at INFO (asyncssh every channel, APScheduler every job
    # run, watchfiles every change): their warnings are kept, their chatter is not. An idle
    # day must read as a few lines an operator can act on.
    for chatty in ("asyncssh", "apscheduler", "watchfiles"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "sftpd_agent", **context: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**context) if context else logger


def bind_campaign(campaign_id: str) -> AbstractContextManager[None]:
    """Bind ``campaign_id`` to every log line of the current task (a context manager)."""
    return structlog.contextvars.bound_contextvars(campaign_id=campaign_id)
