"""A dependency-free ``sd_notify`` client: how the daemon tells systemd it is ready, alive,
reloading or stopping.

systemd passes ``$NOTIFY_SOCKET`` (a file system path, or ``@name`` for an abstract socket) to
a ``Type=notify`` service; each notification is one datagram of ``KEY=VALUE`` lines. Outside
systemd the variable is unset and every method is a no-op, so the daemon calls them
unconditionally. Sending never raises: systemd going away must not take the agent down.

When to ping the watchdog is the daemon's policy, not this module's: ping at half of
``watchdog_interval()``, and only while the loops make progress, so that a hung agent is
restarted.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

_log = logging.getLogger(__name__)


def _socket_address(value: str) -> str | None:
    """The ``sendto`` address for ``$NOTIFY_SOCKET``; None when unset or unsupported."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # Linux abstract namespace
    return None  # unset, or a transport we do not speak (e.g. vsock:)


def _watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """``$WATCHDOG_USEC`` if meant for process ``pid`` (``$WATCHDOG_PID`` unset or equal)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != pid:
                return None  # inherited from a parent: that watchdog is not ours to feed
        except ValueError:
            return None
    return usec


def _message(fields: Mapping[str, str]) -> bytes:
    """``KEY=VALUE\\n`` lines; newlines inside a value would start a bogus field, so they go."""
    lines = (f"{key}={' '.join(value.splitlines())}\n" for key, value in fields.items())
    return "".join(lines).encode("utf-8", errors="replace")


class Notifier:
    """Sends notifications to systemd; does nothing when not started by systemd.

    Each method returns True when the datagram was handed to the socket, False when there
    is no socket or it could not be reached (logged once per outage, at debug level).
    """

    __slots__ = ("_address", "_failing", "_watchdog_usec")

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier systemd set up for this process through its environment."""
        return cls(
            address=_socket_address(environ.get("NOTIFY_SOCKET", "")),
            watchdog_usec=_watchdog_usec(environ, os.getpid()),
        )

    @property
    def enabled(self) -> bool:
        """Whether there is a notification socket to talk to."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """systemd's watchdog timeout in seconds (``WatchdogSec=``), None when disabled."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 1_000_000

    def ready(self, status: str = "") -> bool:
        """Start-up (or a reload) is complete: systemd may start what depends on us."""
        fields = {"READY": "1"}
        if status:
            fields["STATUS"] = status
        return self._send(fields)

    def status(self, text: str) -> bool:
        """A one-line status that ``systemctl status`` shows."""
        return self._send({"STATUS": text})

    def watchdog(self) -> bool:
        """Still alive and making progress."""
        return self._send({"WATCHDOG": "1"})

    def stopping(self) -> bool:
        """A graceful stop has begun."""
        return self._send({"STOPPING": "1"})

    def reloading(self) -> bool:
        """A reload has begun; send ``ready()`` once it is done.

        MONOTONIC_USEC is what ``Type=notify-reload`` requires to match the reload request;
        plain ``Type=notify`` ignores it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send({"RELOADING": "1", "MONOTONIC_USEC": str(usec)})

    def _send(self, fields: Mapping[str, str]) -> bool:
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a full queue must never stall the event loop
                sock.sendto(_message(fields), self._address)
        except OSError as exc:
            if not self._failing:
                self._failing = True
                _log.debug("sd_notify to %r failed, ignoring: %s", self._address, exc)
            return False
        self._failing = False
        return True
