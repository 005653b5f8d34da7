"""Host keys for ``sftpd-agent trust-host``: the key a server presents, and ``known_hosts``.

The agent itself never learns a host key (see ``sftp``): an operator runs ``trust-host``
once (the dialogue is ``commands.trust_host``). Here: fetching the key the server presents
(asyncssh, no login), the keys ``known_hosts`` already holds for a host, OpenSSH's line and
fingerprint formats, and appending a line durably.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path

import asyncssh

from ..config import RemoteSettings
from ..errors import PermanentRemoteError
from .sftp import describe_endpoint, load_known_hosts, translated

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
