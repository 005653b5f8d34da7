"""Fuzz: random outbox names and bytes dropped into the real daemon (against a real sshd).
Whatever arrives, its loops never die, every entry gets an outcome, a good campaign dropped
afterwards is published, and the daemon stops cleanly and comes up again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sftpd_agent.pipeline.outbox import eligible
from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.servers import SftpServer

EXAMPLES = 80

names = st.binary(min_size=1, max_size=240).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))
suffixes = st.sampled_from([b".csv", b".CSV", b".csv", b".txt", b".csv.tmp", b""])
row_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80)
bodies = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.tuples(st.from_regex(r"[A-Za-z0-9]{0,12}", fullmatch=True),
                       st.sampled_from(["+33612345678", "0612345679", "+2626923", "x", ""]),
                       st.sampled_from(["Shop", "", "TOOLONGSENDER12"]), row_text),
             max_size=30).map(lambda rs: "\r\n".join(";".join(r) for r in rs).encode(
                 "utf-8", "surrogatepass")),
)


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=13, lock_seconds=0, ack_delay=3600, stop_share=0, mo_share=0)


@pytest.fixture
def daemon(tmp_path: Path, openssh: SftpServer) -> Iterator[Daemon]:
    config = write_config(tmp_path, openssh, campaign={"stable_seconds": 0.2})
    agent = Daemon(config, tmp_path / "agent", openssh)
    yield agent
    agent.kill()


def _waiting(outbox: Path) -> list[str]:
    """Regular files in the outbox that the agent should still take."""
    return [entry.name for entry in os.scandir(outbox)
            if eligible(entry.name) and entry.is_file(follow_symlinks=False)]


@pytest.mark.slow
def test_random_names_and_bytes_never_stop_the_daemon(daemon: Daemon) -> None:
    daemon.start()
    outbox = os.fsencode(daemon.outbox)
    staging = os.fsencode(daemon.root / "staging")
    os.makedirs(staging, exist_ok=True)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(name=names, suffix=suffixes, body=bodies)
    def drop(name: bytes, suffix: bytes, body: bytes) -> None:
        full = (name + suffix)[-250:]
        if full.startswith(b"."):
            full = b"x" + full[1:]
        temporary = staging + b"/drop"
        with open(temporary, "wb") as out:
            out.write(body)
        os.rename(temporary, outbox + b"/" + full)
        assert not daemon.exited(), daemon.output()[-3000:]

    drop()
    wait_until(lambda: not _waiting(daemon.outbox), timeout=60, what="every file taken")
    assert not daemon.exited(), daemon.output()[-3000:]
    daemon.drop("zzgood.csv", rows(5, prefix="GOOD"))
    wait_until(lambda: daemon.state("zzgood") == "done", timeout=60, what="good campaign done")
    report = daemon.status()
    assert report["agent"]["healthy"], report["agent"]
    assert all(c["state"] in ("held", "done", "scheduled", "rejected")
               for c in report["campaigns"]), {c["file"]: c["state"]
                                                for c in report["campaigns"]}
    assert not daemon.logged("loop_ended")
    assert daemon.stop() == 0
    daemon.start()
    wait_until(lambda: daemon.status()["agent"]["healthy"], what="healthy after restart")
    assert daemon.stop() == 0
