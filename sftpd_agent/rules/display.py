"""Names that came from outside, made safe to show and to reuse: pure.

A dropped file's name is whatever the drop zone's file system holds: bytes that may not be
UTF-8 (a Windows share writes CP1252), control characters (a newline, an escape sequence that
would repaint a terminal), up to 255 bytes. Python hands such a name over as a ``str`` with
surrogate escapes. It is kept as it is for the file system calls that need it, and shown
everywhere else (journal, logs, e-mail, ``status``) in one safe text form: undecodable bytes
as ``\\xe9``, control characters as ``\\n`` or ``\\x1b``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection

NAME_MAX = 255
"""Bytes in one file name on Linux file systems."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(name: str) -> str:
    """``name`` as text safe to store, log and print: valid UTF-8, one line, no escapes.

    >>> shown("caf\\udce9.csv"), shown("a\\nb.csv")
    ('caf\\\\xe9.csv', 'a\\\\nb.csv')
    """
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(_escape, text)


def plain(name: str) -> str:
    """``name`` without its undecodable bytes and control characters: the text its campaign
    id and send time are read from (the same for every name the provider's grammar admits).
    """
    text = os.fsencode(name).decode("utf-8", "ignore")
    return _CONTROL.sub("", text)


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` as one line: runs of white space (line ends included) become one space; cut
    to ``limit`` characters with "..." when given."""
    line = " ".join(text.split())
    if limit is None or len(line) <= limit:
        return line
    return line[:limit - 3] + "..."


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100
                                 else f"\\u{ord(char):04x}")


def local_name(name: str, *, room: int = 0, tag: str = "") -> str:
    """A file name for one of our own folders (``failed/``, ``archive/``) made from ``name``:
    its safe form, cut so that ``room`` more bytes (a suffix such as ``.errors.csv``) still fit
    in a name; ``tag`` (e.g. the campaign's number) is added before the extension when given,
    to keep two files apart.
    """
    safe = shown(name).replace("/", "\\x2f")
    if safe.startswith("."):
        safe = "_" + safe  # never a hidden file, never "." or ".."
    stem, dot, extension = safe.rpartition(".")
    if not dot or len(extension) > 10:
        stem, extension = safe, ""
    suffix = (f"-{tag}" if tag else "") + (f".{extension}" if extension else "")
    limit = NAME_MAX - room - len(suffix.encode())
    return _cut(stem, limit) + suffix


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:max(0, limit)].decode("utf-8", "ignore")


def archived_original(file: str, uploaded: Collection[str]) -> str:
    """The name a campaign's dropped file keeps in its archive folder: its own (cut to fit,
    room left for ``.errors.csv``), or ``original-<name>`` when one of the ``uploaded``
    provider files has that name (a file dropped, or submitted, under the provider's name):
    the original is never overwritten by what was sent."""
    kept = local_name(file, room=len(".errors.csv"))
    if kept in uploaded:
        return local_name(f"original-{file}", room=len(".errors.csv"))
    return kept
