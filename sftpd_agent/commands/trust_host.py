"""``sftpd-agent trust-host``: fetch the server's host key and, once confirmed, trust it.

The agent itself never learns a host key: an operator runs this once, compares the printed
SHA256 fingerprint with the one the provider gives, and answers ``y``. The key is appended to
``remote.known_hosts`` in OpenSSH's format. A different key already recorded for the host is
never replaced: the operator removes the old line after checking with the provider. Fetching
the key and reading and writing ``known_hosts`` are in ``remote.trust``; this is the dialogue.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from ..config import Settings, load_settings
from ..errors import ConfigError, ExitCode, RemoteError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true",
                        help="trust the key without asking (for scripts)")


def run(args: argparse.Namespace) -> int:
    return trust(args, load_settings(args.config), stdin=sys.stdin, stdout=sys.stdout)


def trust(args: argparse.Namespace, settings: Settings, *, stdin: TextIO, stdout: TextIO,
          stderr: TextIO | None = None) -> ExitCode:
    """OK: trusted (now or already); NOT_OK: not trusted (declined, unreachable, a different
    key recorded, known_hosts not writable)."""
    from ..remote.trust import (  # noqa: PLC0415  (asyncssh only for this command)
        append_line,
        fetch_host_key,
        fingerprint_line,
        known_hosts_line,
        known_hosts_name,
        recorded_keys,
        same_key,
    )

    err = stderr if stderr is not None else sys.stderr
    remote = settings.remote
    if not remote.host:
        raise ConfigError("remote.host is not set")
    where = known_hosts_name(remote.host, remote.port)
    try:
        key = asyncio.run(fetch_host_key(remote))
        recorded = recorded_keys(remote.known_hosts, remote.host, remote.port)
    except RemoteError as exc:
        print(f"sftpd-agent trust-host: {exc}", file=err)
        return ExitCode.NOT_OK
    print(f"The server {where} presents this host key:", file=stdout)
    print(f"  {fingerprint_line(key, where)}", file=stdout)
    if any(same_key(key, known) for known in recorded):
        print(f"This key is already trusted in {remote.known_hosts}; nothing to do.", file=stdout)
        return ExitCode.OK
    if recorded:
        print(f"sftpd-agent trust-host: {remote.known_hosts} already holds a DIFFERENT host key "
              f"for {where}. The server's key has changed, or someone is in the way: verify "
              f"the new fingerprint with the provider, then remove the old line (ssh-keygen "
              f"-R '{where}' -f {remote.known_hosts}) and run trust-host again.", file=err)
        return ExitCode.NOT_OK
    if not args.yes:
        print("Compare it with the fingerprint the provider gave you.", file=stdout)
        if not confirm("Trust this host key? [y/N] ", stdin, stdout):
            print("Not trusted; nothing written.", file=stdout)
            return ExitCode.NOT_OK
    try:
        append_line(remote.known_hosts, known_hosts_line(key, where))
    except OSError as exc:
        print(f"sftpd-agent trust-host: cannot write {remote.known_hosts}: {exc.strerror}",
              file=err)
        return ExitCode.NOT_OK
    print(f"Added to {remote.known_hosts}.", file=stdout)
    return ExitCode.OK


def confirm(question: str, stdin: TextIO, stdout: TextIO) -> bool:
    """Ask; only ``y`` or ``yes`` is a yes. No input (EOF, a closed stream) is a no."""
    stdout.write(question)
    stdout.flush()
    try:
        answer = stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if not answer.endswith("\n"):
        stdout.write("\n")
    return answer.strip().lower() in {"y", "yes"}
