"""``sftpd-agent trust-host``: fetch the server's host key and, once confirmed, trust it.

The agent itself never learns a host key (see ``sftp``): an operator runs this once, compares
the printed SHA256 fingerprint with the one the provider gives, and answers ``y``. The key is
appended to ``remote.known_hosts`` in OpenSSH's format. A different key already recorded for
the host is never replaced: the operator removes the old line after checking with the provider.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from pathlib import Path
from typing import TextIO

import asyncssh

from ..config import RemoteSettings, Settings
from ..errors import ConfigError, PermanentRemoteError, RemoteError
from .sftp import describe_endpoint, load_known_hosts, translated

EXIT_OK, EXIT_NOT_OK = 0, 1

# ssh-keygen's names and sizes for the key types whose size is fixed.
_KEY_TYPES: dict[str, tuple[str, int | None]] = {
    "ssh-ed25519": ("ED25519", 256),
    "ssh-ed448": ("ED448", 456),
    "sk-ssh-ed25519@openssh.com": ("ED25519-SK", 256),
    "sk-ecdsa-sha2-nistp256@openssh.com": ("ECDSA-SK", 256),
    "ssh-rsa": ("RSA", None),
    "ssh-dss": ("DSA", None),
    "ecdsa-sha2-nistp256": ("ECDSA", 256),
    "ecdsa-sha2-nistp384": ("ECDSA", 384),
    "ecdsa-sha2-nistp521": ("ECDSA", 521),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true",
                        help="trust the key without asking (for scripts)")


def run(ns: argparse.Namespace, settings: Settings, *, stdin: TextIO, stdout: TextIO,
        stderr: TextIO | None = None) -> int:
    """0 trusted (now or already); 1 not trusted (declined, unreachable, a different key)."""
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
        return EXIT_NOT_OK
    print(f"The server {where} presents this host key:", file=stdout)
    print(f"  {fingerprint_line(key, where)}", file=stdout)
    if any(same_key(key, known) for known in recorded):
        print(f"This key is already trusted in {remote.known_hosts}; nothing to do.", file=stdout)
        return EXIT_OK
    if recorded:
        print(f"sftpd-agent trust-host: {remote.known_hosts} already holds a DIFFERENT host key "
              f"for {where}. The server's key has changed, or someone is in the way: verify "
              f"the new fingerprint with the provider, then remove the old line (ssh-keygen "
              f"-R '{where}' -f {remote.known_hosts}) and run trust-host again.", file=err)
        return EXIT_NOT_OK
    if not ns.yes:
        print("Compare it with the fingerprint the provider gave you.", file=stdout)
        if not confirm("Trust this host key? [y/N] ", stdin, stdout):
            print("Not trusted; nothing written.", file=stdout)
            return EXIT_NOT_OK
    try:
        append_line(remote.known_hosts, known_hosts_line(key, where))
    except OSError as exc:
        print(f"sftpd-agent trust-host: cannot write {remote.known_hosts}: {exc.strerror}",
              file=err)
        return EXIT_NOT_OK
    print(f"Added to {remote.known_hosts}.", file=stdout)
    return EXIT_OK


async def fetch_host_key(remote: RemoteSettings) -> asyncssh.SSHKey:
    """The key the server presents in its handshake (no login), within the connect timeout."""
    where = describe_endpoint(remote)
    timeout = remote.connect_timeout_seconds
    with translated(where, timeout):
        async with asyncio.timeout(timeout):
            key = await asyncssh.get_server_host_key(remote.host, remote.port, config=None)
    if key is None:
        raise PermanentRemoteError(f"{where}: the server presented no host key")
    return key


def recorded_keys(known_hosts: Path, host: str, port: int) -> list[asyncssh.SSHKey]:
    """The host keys ``known_hosts`` holds for ``host``:``port``, as the agent would match them."""
    if not known_hosts.exists():
        return []
    trusted = load_known_hosts(known_hosts)
    address = host if _is_address(host) else ""
    return list(asyncssh.match_known_hosts(trusted, host, address, port)[0])


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def same_key(one: asyncssh.SSHKey, other: asyncssh.SSHKey) -> bool:
    return one.public_data == other.public_data


def known_hosts_name(host: str, port: int) -> str:
    """The host as OpenSSH writes it in known_hosts: bare on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def known_hosts_line(key: asyncssh.SSHKey, where: str) -> str:
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{where} {algorithm} {blob}"


def fingerprint_line(key: asyncssh.SSHKey, where: str) -> str:
    """What ``ssh-keygen -lf`` prints for the known_hosts line: bits, SHA256, host, type."""
    algorithm = key.algorithm.decode("ascii")
    name, bits = _KEY_TYPES.get(algorithm, (algorithm.upper(), None))
    if bits is None:
        bits = getattr(key.pyca_key, "key_size", 0)
    return f"{bits} {key.get_fingerprint('sha256')} {where} ({name})"


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


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to ``path`` (folder and file created when missing), flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    with os.fdopen(descriptor, "r+b") as file:
        size = os.fstat(file.fileno()).st_size
        needs_newline = False
        if size:
            file.seek(size - 1)
            needs_newline = file.read(1) != b"\n"
        file.write((("\n" if needs_newline else "") + line + "\n").encode("ascii"))
        file.flush()
        os.fsync(file.fileno())
