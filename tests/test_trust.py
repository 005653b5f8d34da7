"""``sftpd-agent trust-host`` against the asyncssh simulator and a real OpenSSH sshd."""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import subprocess
from pathlib import Path

import asyncssh
import pytest

from sftpd_agent.commands import trust_host as trust_command
from sftpd_agent.config import RemoteSettings, Settings
from sftpd_agent.errors import ConfigError
from sftpd_agent.remote import trust
from sftpd_agent.remote.sftp import connect
from tests.servers import SftpServer


def settings_for(server: SftpServer, known_hosts: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "host": server.host, "port": server.port, "username": server.username,
        "private_key": server.client_key, "known_hosts": known_hosts,
        "connect_timeout_seconds": 10, **overrides,
    }
    return Settings(remote=RemoteSettings(**values))  # type: ignore[arg-type]


def namespace(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    trust_command.add_arguments(parser)
    return parser.parse_args(list(argv))


class Outcome:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


async def trust_host(settings: Settings, *argv: str, answer: str | None = None) -> Outcome:
    """Run the command as the CLI would (in a thread: it runs its own event loop)."""
    stdin = io.StringIO(answer if answer is not None else "")
    stdout, stderr = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(trust_command.trust, namespace(*argv), settings, stdin=stdin,
                                   stdout=stdout, stderr=stderr)
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


def server_line(server: SftpServer) -> str:
    """The line the fixture wrote for the server, independently of trust-host."""
    return server.known_hosts.read_text().strip()


async def test_yes_writes_the_line_and_the_agent_can_then_connect(
        sftp_server: SftpServer, tmp_path: Path) -> None:
    known = tmp_path / "etc" / "sftpd-agent" / "known_hosts"  # folder missing: created
    settings = settings_for(sftp_server, known)
    outcome = await trust_host(settings, "--yes")
    assert outcome.code == 0, outcome.err
    assert sftp_server.host_key_fingerprint in outcome.out
    assert "Trust this host key?" not in outcome.out
    assert known.read_text() == server_line(sftp_server) + "\n"
    async with await connect(settings.remote) as remote:
        assert await remote.list("/Send") == []


async def test_the_printed_fingerprint_is_what_ssh_keygen_prints(
        sftp_server: SftpServer, tmp_path: Path) -> None:
    outcome = await trust_host(settings_for(sftp_server, tmp_path / "kh"), "--yes")
    keygen = subprocess.run(["ssh-keygen", "-l", "-f", str(sftp_server.known_hosts)],
                            capture_output=True, text=True, timeout=30, check=True)
    assert keygen.stdout.strip() in outcome.out.splitlines()[1]
    assert f"[127.0.0.1]:{sftp_server.port} (ED25519)" in keygen.stdout


@pytest.mark.parametrize("answer", ["y\n", "Y\n", "yes\n", " YES \n"])
async def test_a_yes_answer_writes_the_line(sftp_server: SftpServer, tmp_path: Path,
                                            answer: str) -> None:
    known = tmp_path / "known_hosts"
    outcome = await trust_host(settings_for(sftp_server, known), answer=answer)
    assert "Trust this host key? [y/N]" in outcome.out
    assert outcome.code == 0
    assert known.read_text() == server_line(sftp_server) + "\n"


@pytest.mark.parametrize("answer", ["", "\n", "n\n", "no\n", "yep\n"])
async def test_anything_else_writes_nothing(sftp_server: SftpServer, tmp_path: Path,
                                            answer: str) -> None:
    known = tmp_path / "known_hosts"
    outcome = await trust_host(settings_for(sftp_server, known), answer=answer)
    assert outcome.code == 1
    assert "Trust this host key? [y/N]" in outcome.out
    assert sftp_server.host_key_fingerprint in outcome.out  # shown before the question
    assert not known.exists()


async def test_the_same_key_twice_is_a_no_op(sftp_server: SftpServer, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("# kept\n" + server_line(sftp_server) + "\n")
    before = known.read_bytes()
    outcome = await trust_host(settings_for(sftp_server, known), answer="y\n")
    assert outcome.code == 0
    assert "already trusted" in outcome.out
    assert "Trust this host key?" not in outcome.out
    assert known.read_bytes() == before


async def test_a_changed_key_is_refused_even_with_yes(sftp_server: SftpServer,
                                                      tmp_path: Path) -> None:
    old = asyncssh.generate_private_key("ssh-ed25519")
    known = tmp_path / "known_hosts"
    old_line = trust.known_hosts_line(old, f"[127.0.0.1]:{sftp_server.port}")
    known.write_text(old_line + "\n")
    outcome = await trust_host(settings_for(sftp_server, known), "--yes")
    assert outcome.code == 1
    assert "DIFFERENT host key" in outcome.err
    assert "remove the old line" in outcome.err
    assert len(outcome.err.strip().splitlines()) == 1
    assert known.read_text() == old_line + "\n"


async def test_other_hosts_lines_are_kept(sftp_server: SftpServer, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    known = tmp_path / "known_hosts"
    other_line = trust.known_hosts_line(other, "sftp.example.net")
    known.write_text(other_line)  # no final newline: one is added before ours
    outcome = await trust_host(settings_for(sftp_server, known), "--yes")
    assert outcome.code == 0
    assert known.read_text() == f"{other_line}\n{server_line(sftp_server)}\n"


async def test_an_unreachable_host_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    known = tmp_path / "known_hosts"
    settings = Settings(remote=RemoteSettings(host="127.0.0.1", port=port, known_hosts=known,
                                              connect_timeout_seconds=5))
    outcome = await trust_host(settings, "--yes")
    assert outcome.code == 1
    assert len(outcome.err.strip().splitlines()) == 1
    assert f"127.0.0.1:{port}" in outcome.err
    assert not known.exists()


async def test_a_silent_server_is_bounded_by_the_connect_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        settings = Settings(remote=RemoteSettings(
            host="127.0.0.1", port=silent.getsockname()[1], known_hosts=tmp_path / "kh",
            connect_timeout_seconds=1))
        async with asyncio.timeout(10):
            outcome = await trust_host(settings, "--yes")
    assert outcome.code == 1
    assert "within 1 s" in outcome.err


def test_no_host_is_a_configuration_error(tmp_path: Path) -> None:
    settings = Settings(remote=RemoteSettings(known_hosts=tmp_path / "kh"))
    with pytest.raises(ConfigError, match=r"remote\.host"):
        trust_command.trust(namespace("--yes"), settings, stdin=io.StringIO(), stdout=io.StringIO())


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("sftp.example.net", 22, "sftp.example.net"),
    ("sftp.example.net", 2222, "[sftp.example.net]:2222"),
    ("127.0.0.1", 22, "127.0.0.1"),
    ("::1", 2222, "[::1]:2222"),
])
def test_known_hosts_names_follow_openssh(host: str, port: int, expected: str) -> None:
    assert trust.known_hosts_name(host, port) == expected


def test_port_22_lines_are_bare_and_read_back_by_ssh_keygen(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    line = trust.known_hosts_line(key, trust.known_hosts_name("sftp.example.net", 22))
    known = tmp_path / "known_hosts"
    trust.append_line(known, line)
    found = subprocess.run(["ssh-keygen", "-F", "sftp.example.net", "-f", str(known)],
                           capture_output=True, text=True, timeout=30, check=False)
    assert found.returncode == 0 and line in found.stdout
    keygen = subprocess.run(["ssh-keygen", "-l", "-f", str(known)], capture_output=True,
                            text=True, timeout=30, check=True)
    assert keygen.stdout.strip() == trust.fingerprint_line(key, "sftp.example.net")


def test_rsa_fingerprint_lines_carry_the_key_size(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-rsa", key_size=3072)
    known = tmp_path / "known_hosts"
    trust.append_line(known, trust.known_hosts_line(key, "[h]:2222"))
    keygen = subprocess.run(["ssh-keygen", "-l", "-f", str(known)], capture_output=True,
                            text=True, timeout=30, check=True)
    assert keygen.stdout.strip() == trust.fingerprint_line(key, "[h]:2222")
