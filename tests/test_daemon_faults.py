"""The network cut at random under the daemon: still exactly once, whole, no .tmp left.

A loopback TCP proxy between the daemon and OpenSSH's sshd aborts connections after a random
number of bytes (seeded, a bounded number of cuts), while many campaigns are uploaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.faults import FaultProxy, ProxyThread
from tests.servers import SftpServer


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=11, lock_seconds=0, ack_delay=10**6, stop_share=0, mo_share=0)


@pytest.fixture
def proxied(tmp_path: Path, openssh: SftpServer) -> Iterator[tuple[Daemon, FaultProxy]]:
    with ProxyThread(openssh.port, seed=20261121, cut_after=(4_000, 300_000),
                     max_cuts=12) as proxy:
        known = tmp_path / "known_hosts_proxy"
        known.write_text(openssh.known_hosts.read_text().replace(
            f"]:{openssh.port} ", f"]:{proxy.port} "))
        config = write_config(tmp_path, openssh, remote={
            "port": proxy.port, "known_hosts": str(known), "retry_base_seconds": 0.05,
            "retry_ceiling_seconds": 0.5, "operation_timeout_seconds": 5})
        daemon = Daemon(config, tmp_path / "agent", openssh)
        try:
            yield daemon, proxy
        finally:
            daemon.kill()


def test_random_cuts_during_uploads_still_publish_each_campaign_once(
    proxied: tuple[Daemon, FaultProxy],
) -> None:
    daemon, proxy = proxied
    daemon.start()
    for n in range(12):
        daemon.drop(f"cut{n:02d}.csv", rows(1500 + 300 * n, start=n * 10_000, prefix=f"C{n}x"))
    wait_until(lambda: len(daemon.journal()) == 12, timeout=180, what="12 published")
    wait_until(lambda: all(c["state"] == "done" for c in daemon.status()["campaigns"]),
               timeout=60, what="all done")
    names = [entry.name for entry in daemon.journal()]
    assert len(set(names)) == 12, names
    for entry in daemon.journal():
        (archived,) = (daemon.root / "archive").glob(f"*/{entry.name}")
        assert hashlib.sha256(archived.read_bytes()).hexdigest() == entry.sha256
    assert not list(daemon.server.send_dir.glob("*.tmp"))
    assert proxy.cuts >= 3, "the proxy should have cut some uploads"
    assert daemon.logged("remote_failed")
