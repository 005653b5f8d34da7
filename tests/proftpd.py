"""ProFTPD's ``mod_sftp`` as a second real SFTP server, for tests and benchmarks.

The provider runs OpenSSH; ProFTPD is the other server SFTP clients meet most, and it behaves
differently where uploads care: it offers no ``limits@openssh.com`` (a client that trusts
only advertised limits falls back to 16 KiB writes), and its own SSH and SFTP code.

- :func:`unavailable`: why ProFTPD cannot run here (not installed, not root), or None;
- :func:`start_proftpd`: ``proftpd -n`` on a free 127.0.0.1 port with a generated config,
  chrooted (``DefaultRoot``) to a folder, public-key login only: the process and its port;
- :func:`~tests.servers.stop_server` stops it;
- the ``proftpd`` fixture: an :class:`~tests.servers.SftpServer` (kind ``"proftpd"``) with
  the simulator's processing over its root, as the ``openssh`` fixture gives.

Installing it (Debian bookworm): ``apt-get install -y --no-install-recommends proftpd-core
proftpd-mod-crypto``; ``mod_sftp`` is in ``proftpd-mod-crypto``, not in ``proftpd-core``.
Nothing is installed here, and CI does not install it: without it the tests skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from sftpd_agent.simulator import SimulatorOptions, SimulatorThread
from sftpd_agent.testing import ManualClock
from tests.servers import ClientKey, SftpServer, stop_server, wait_for_banner

PROFTPD = Path("/usr/sbin/proftpd")
MODULE_PATH = Path("/usr/lib/proftpd")
MOD_SFTP = MODULE_PATH / "mod_sftp.so"
INSTALL = "apt-get install -y --no-install-recommends proftpd-core proftpd-mod-crypto"
ATTEMPTS = 3


def unavailable() -> str | None:
    """Why ProFTPD's mod_sftp cannot run here, or None when it can."""
    if not PROFTPD.exists():
        return f"{PROFTPD} is not installed ({INSTALL})"
    if not MOD_SFTP.exists():
        return f"{MOD_SFTP} is not installed (package proftpd-mod-crypto)"
    if os.geteuid() != 0:
        return "proftpd with DefaultRoot (chroot) needs root"
    return None


def _username() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rfc4716_keys(authorized_keys: Path, out: Path) -> Path:
    """``authorized_keys`` (OpenSSH lines) rewritten in RFC 4716, the form mod_sftp reads."""
    blocks = []
    for line in authorized_keys.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key = asyncssh.import_public_key(line)
            blocks.append(key.export_public_key("rfc4716").decode())
    out.write_text("".join(blocks))
    return out


def _config(folder: Path, port: int, root: Path, host_key: Path, user_keys: Path,
            sftp_log: bool) -> Path:
    config = folder / "proftpd.conf"
    log = f"SFTPLog {folder / 'sftp.log'}" if sftp_log else "# no SFTPLog"
    config.write_text(f"""\
ServerName "sftpd-agent test"
ServerType standalone
UseFtpUsers off
UseIPv6 off
DefaultAddress 127.0.0.1
SocketBindTight on
Port {port}
PidFile {folder / "proftpd.pid"}
ScoreboardFile {folder / "proftpd.scoreboard"}
DelayEngine off
WtmpLog off
TransferLog none
SystemLog {folder / "proftpd.log"}
UseReverseDNS off
User nobody
Group nogroup
RootLogin on
RequireValidShell off
AuthOrder mod_auth_unix.c
DefaultRoot {root}
AllowOverwrite on
Umask 022
MaxInstances 30
TimeoutIdle 600
ModulePath {MODULE_PATH}
LoadModule mod_sftp.c
SFTPEngine on
{log}
SFTPHostKey {host_key}
SFTPAuthMethods publickey
SFTPAuthorizedUserKeys file:{user_keys}
SFTPCompression off
<Limit LOGIN>
  AllowUser {_username()}
  DenyAll
</Limit>
""")
    return config


def start_proftpd(folder: Path, root: Path, host_key: Path, authorized_keys: Path, *,
                  sftp_log: bool = True) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``proftpd -n`` serving ``root`` as ``/`` on a free 127.0.0.1 port (3 tries).

    ``host_key``: a private key file in PEM form; ``authorized_keys``: OpenSSH lines,
    converted for mod_sftp. ``sftp_log``: mod_sftp's own log, ``folder/sftp.log`` (it writes
    a line for every SSH_MSG_IGNORE, and asyncssh sends one before each packet: a cost a
    benchmark may leave out, as Debian's sample config does). Needs root (chroot, the login
    user's switch); not pytest. Raises RuntimeError with the end of its logs when it does
    not start.
    """
    user_keys = rfc4716_keys(authorized_keys, folder / "authorized_keys.rfc4716")
    log = folder / "proftpd.out"
    for _attempt in range(ATTEMPTS):
        port = _free_port()
        config = _config(folder, port, root, host_key, user_keys, sftp_log)
        with log.open("ab") as out:
            process = subprocess.Popen([str(PROFTPD), "-n", "-q", "-c", str(config)],
                                       stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        if wait_for_banner(process, port):
            return process, port
        stop_server(process)
    texts = [path.read_text(errors="replace")[-1500:]
             for path in (log, folder / "proftpd.log", folder / "sftp.log") if path.exists()]
    raise RuntimeError("proftpd did not start:\n" + "\n".join(texts))


def write_host_key(path: Path) -> asyncssh.SSHKey:
    """A new host key at ``path`` (0600), in the PEM form every mod_sftp version reads."""
    key = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key.export_private_key("pkcs1-pem"))
    return key


def known_hosts_line(port: int, host_key: asyncssh.SSHKey) -> str:
    algorithm, blob = host_key.export_public_key("openssh").decode().split()[:2]
    return f"[127.0.0.1]:{port} {algorithm} {blob}"


@pytest.fixture
def proftpd(tmp_path: Path, client_key: ClientKey, simulator_options: SimulatorOptions,
            simulator_clock: ManualClock) -> Iterator[SftpServer]:
    """ProFTPD's mod_sftp serving a fresh folder; skipped when it cannot run here."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    folder = tmp_path / "proftpd"
    folder.mkdir()
    root = tmp_path / "proftpd-root"
    root.mkdir()
    host_key = write_host_key(folder / "ssh_host_ecdsa_key")
    thread = SimulatorThread(root, serve=False, options=simulator_options,
                             clock=simulator_clock, interval=0.05)
    process: subprocess.Popen[bytes] | None = None
    try:
        thread.start()  # creates Send/ and Report/
        try:
            process, port = start_proftpd(folder, root, folder / "ssh_host_ecdsa_key",
                                          client_key.authorized_keys)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        known_hosts = tmp_path / "client" / "known_hosts"
        known_hosts.write_text(known_hosts_line(port, host_key) + "\n")
        yield SftpServer("proftpd", "127.0.0.1", port, _username(), client_key.private_key,
                         known_hosts, root, thread.processor, simulator_clock,
                         host_key.get_fingerprint("sha256"))
    finally:
        if process is not None:
            stop_server(process)
        thread.stop()
        shutil.rmtree(root, ignore_errors=True)
