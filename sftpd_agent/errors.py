"""The exceptions sftpd-agent raises, in one small tree.

    AgentError
    ├── ConfigError            a bad or missing setting; the CLI exits 2 with the message
    ├── InputError             a campaign file that cannot be read (file, line, field)
    └── RemoteError            anything the provider's SFTP server did to us
        ├── RetryableRemoteError   network, timeout, server busy: back off and try again
        └── PermanentRemoteError   host key, authentication, permission: a person must act

Third-party exceptions (asyncssh, OSError, pydantic) are translated into these at one edge
each: ``config`` for settings, ``reader`` for input files, ``sftp`` for the remote.

``ExitCode`` is what every command returns: the one definition of the exit statuses.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit status of every ``sftpd-agent`` command (what each means, per command, is in
    the table of ``commands``)."""

    OK = 0
    """Success."""
    NOT_OK = 1
    """The thing checked is not OK: a file that would be held, an unhealthy agent, a step
    that failed."""
    USAGE = 2
    """A usage or configuration error: one line on stderr naming the bad key or argument."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C (SIGINT), as shells report it (128 + 2)."""


class AgentError(Exception):
    """Base of every error sftpd-agent raises on purpose."""


class ConfigError(AgentError):
    """A configuration problem, described in one line that names the key."""


class InputError(AgentError):
    """A campaign file that cannot be read as a whole.

    ``line`` is the 1-based physical line where the problem was found, when known;
    ``field`` the column name, when the problem is one field.
    """

    def __init__(self, reason: str, *, file: str = "", line: int | None = None,
                 field: str | None = None) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.file or "input"
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f" ({self.field})"
        return f"{where}: {self.reason}"


class RemoteError(AgentError):
    """A failure talking to the provider's SFTP server."""


class RetryableRemoteError(RemoteError):
    """A transient failure: the connection, a timeout, a busy server."""


class PermanentRemoteError(RemoteError):
    """A failure that retrying will not fix: host key, authentication, permission."""
