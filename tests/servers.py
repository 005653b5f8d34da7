"""Pytest fixtures for SFTP servers that play the provider.

- ``simulator``: the embedded asyncssh simulator in the test's event loop (async tests only:
  the server serves while the test awaits).
- ``simulator_thread``: the same in its own thread and loop, for sync tests and agents run
  in another loop or process.
- ``openssh``: a real OpenSSH ``sshd`` (``internal-sftp``, chrooted) with the simulator's
  processing (no server) over its chroot. Needs root and ``/usr/sbin/sshd``: skipped
  without them, failed when ``$CI`` is set.
- ``sftp_server``: ``simulator`` and ``openssh`` in turn (ids ``asyncssh``, ``openssh``).

Each yields an ``SftpServer``. Time on the provider side is ``ManualClock``: nothing is due
(verdict after ``lock_seconds``, ACK, STOP/SMSMO appends) until the test advances it.
Options come from the ``simulator_options`` fixture, which a test module may override.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from sftpd_agent.simulator import Processor, Simulator, SimulatorOptions, SimulatorThread
from sftpd_agent.testing import ManualClock

SSHD = Path("/usr/sbin/sshd")
CHROOT_BASE = Path("/srv/sftpd-agent-tests")  # root-owned all the way up, unlike /tmp
STARTUP_SECONDS = 10.0


@dataclass(frozen=True)
class ClientKey:
    private_key: Path  # OpenSSH format, 0600
    authorized_keys: Path


@dataclass(frozen=True)
class SftpServer:
    """Everything a test needs to reach a provider server and look behind it."""

    kind: str  # "asyncssh" or "openssh"
    host: str
    port: int
    username: str
    client_key: Path
    known_hosts: Path
    root: Path  # the folder the server shows as "/", holding Send/ and Report/
    processor: Processor
    clock: ManualClock
    host_key_fingerprint: str
    # The in-loop Simulator (``simulator`` fixture only), e.g. for drop_connections().
    simulator: Simulator | None = None

    @property
    def send_dir(self) -> Path:
        return self.root / "Send"

    @property
    def report_dir(self) -> Path:
        return self.root / "Report"

    def openssh_options(self) -> list[str]:
        """Options for OpenSSH's ``sftp``/``ssh`` to log in with this key, and nothing else."""
        return ["-F", "/dev/null", "-i", str(self.client_key),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
                "-o", "ConnectTimeout=10"]

    async def connect(self) -> asyncssh.SSHClientConnection:
        """An asyncssh client connection, verifying the host key."""
        return await asyncssh.connect(
            self.host, self.port, username=self.username, client_keys=[str(self.client_key)],
            known_hosts=str(self.known_hosts), agent_path=None, config=None,
            connect_timeout=10,
        )


def _username() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _public_line(key: asyncssh.SSHKey) -> str:
    algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
    return f"{algorithm} {blob}"


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    """Override in a test module (or parametrize) to change the provider's behaviour."""
    return SimulatorOptions(seed=20160728, lock_seconds=5.0, ack_delay=60.0,
                            ack_failure_share=0.25, stop_share=0.5, mo_share=0.5,
                            report_steps=3, report_interval=30.0, rewrite_step=2)


@pytest.fixture
def simulator_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def client_key(tmp_path: Path) -> ClientKey:
    folder = tmp_path / "client"
    folder.mkdir()
    key = asyncssh.generate_private_key("ssh-ed25519")
    private = folder / "id_ed25519"
    _write_private(private, key.export_private_key("openssh"))
    (folder / "id_ed25519.pub").write_text(_public_line(key) + "\n")
    authorized = folder / "authorized_keys"
    authorized.write_text(_public_line(key) + "\n")
    return ClientKey(private, authorized)


@pytest.fixture
async def simulator(tmp_path: Path, client_key: ClientKey, simulator_options: SimulatorOptions,
                    simulator_clock: ManualClock) -> AsyncIterator[SftpServer]:
    simulator = Simulator(tmp_path / "provider", authorized_keys=client_key.authorized_keys,
                          options=simulator_options, clock=simulator_clock, interval=0.05)
    async with simulator:
        known_hosts = tmp_path / "client" / "known_hosts"
        known_hosts.write_text(simulator.known_hosts_line() + "\n")
        yield SftpServer("asyncssh", simulator.host, simulator.port, _username(),
                         client_key.private_key, known_hosts, simulator.root,
                         simulator.processor, simulator_clock, simulator.host_key_fingerprint,
                         simulator)


@pytest.fixture
def simulator_thread(tmp_path: Path, client_key: ClientKey, simulator_options: SimulatorOptions,
                     simulator_clock: ManualClock) -> Iterator[SftpServer]:
    thread = SimulatorThread(tmp_path / "provider", authorized_keys=client_key.authorized_keys,
                             options=simulator_options, clock=simulator_clock, interval=0.05)
    with thread:
        simulator = thread.simulator
        known_hosts = tmp_path / "client" / "known_hosts"
        known_hosts.write_text(simulator.known_hosts_line() + "\n")
        yield SftpServer("asyncssh", simulator.host, simulator.port, _username(),
                         client_key.private_key, known_hosts, simulator.root,
                         simulator.processor, simulator_clock, simulator.host_key_fingerprint)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"OpenSSH tests must run in CI: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _sshd_config(folder: Path, port: int, chroot: Path, host_key: Path,
                 authorized_keys: Path) -> Path:
    config = folder / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile {authorized_keys}
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {_username()}
Subsystem sftp internal-sftp
ForceCommand internal-sftp
ChrootDirectory {chroot}
AllowTcpForwarding no
X11Forwarding no
PermitTTY no
LogLevel VERBOSE
""")
    return config


def wait_for_banner(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether the server (sshd, proftpd) answers with an SSH banner within STARTUP_SECONDS
    (False if it died)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), \
                socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            if conn.recv(4).startswith(b"SSH-"):
                return True
        time.sleep(0.05)
    return False


def start_sshd(folder: Path, chroot: Path, host_key: Path,
               authorized_keys: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """Start ``sshd -D`` on a free 127.0.0.1 port (3 tries): the process and its port, or None
    (its log is ``folder/sshd.log``). Also for benchmarks: needs root, not pytest."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
    for _attempt in range(3):
        port = _free_port()
        config = _sshd_config(folder, port, chroot, host_key, authorized_keys)
        with (folder / "sshd.log").open("ab") as log:
            process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if wait_for_banner(process, port):
            return process, port
        stop_server(process)
    return None


def stop_server(process: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """Stop a server process (sshd, proftpd): SIGTERM, then SIGKILL after ``timeout``
    seconds (its sessions are its children: they end with it)."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def write_client_key(folder: Path) -> tuple[Path, Path]:
    """A new client key in ``folder`` (``id_ed25519``, 0600) and its ``authorized_keys``:
    for the benchmarks, which start servers outside pytest."""
    client = asyncssh.generate_private_key("ssh-ed25519")
    client_key = folder / "id_ed25519"
    client.write_private_key(client_key)
    client_key.chmod(0o600)
    authorized = folder / "authorized_keys"
    authorized.write_bytes(client.export_public_key("openssh"))
    return client_key, authorized


@pytest.fixture
def openssh(tmp_path: Path, client_key: ClientKey, simulator_options: SimulatorOptions,
            simulator_clock: ManualClock) -> Iterator[SftpServer]:
    if not SSHD.exists():
        _unavailable(f"{SSHD} is not installed (package openssh-server)")
    if os.geteuid() != 0:
        _unavailable("sshd with ChrootDirectory needs root")
    CHROOT_BASE.mkdir(mode=0o755, exist_ok=True)
    chroot = Path(tempfile.mkdtemp(prefix="sftp-", dir=CHROOT_BASE))
    chroot.chmod(0o755)
    folder = tmp_path / "sshd"
    folder.mkdir()
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key_path = folder / "ssh_host_ed25519_key"
    _write_private(host_key_path, host_key.export_private_key("openssh"))
    thread = SimulatorThread(chroot, serve=False, options=simulator_options,
                             clock=simulator_clock, interval=0.05)
    process: subprocess.Popen[bytes] | None = None
    try:
        thread.start()  # creates Send/ and Report/, owned by us: the login user
        started = start_sshd(folder, chroot, host_key_path, client_key.authorized_keys)
        if started is None:
            log_text = (folder / "sshd.log").read_text(errors="replace")
            pytest.fail(f"sshd did not start:\n{log_text[-2000:]}")
        process, port = started
        known_hosts = tmp_path / "client" / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {_public_line(host_key)}\n")
        yield SftpServer("openssh", "127.0.0.1", port, _username(), client_key.private_key,
                         known_hosts, chroot, thread.processor, simulator_clock,
                         host_key.get_fingerprint("sha256"))
    finally:
        if process is not None:
            stop_server(process)
        thread.stop()
        shutil.rmtree(chroot, ignore_errors=True)


@pytest.fixture(params=[pytest.param("simulator", id="asyncssh"),
                        pytest.param("openssh", id="openssh")])
def sftp_server(request: pytest.FixtureRequest) -> SftpServer:
    """The embedded simulator and OpenSSH in turn; async tests only (see ``simulator``)."""
    server: SftpServer = request.getfixturevalue(request.param)
    return server
