"""Benchmark: uploading a 100 MB file with ``SftpRemote.upload`` against OpenSSH's ``sftp -b``.

    python benchmarks/upload.py [--size-mb 100] [--runs 5] [--keep DIR]

Starts a local OpenSSH ``sshd`` (``internal-sftp``, chrooted, as the ``openssh`` test fixture
does; needs root), writes a file of random bytes, then uploads it ``--runs`` times each way,
alternating: ours (connect, upload with fsync, close: the whole session, as ``sftp -b`` does
it) and ``sftp -b`` with ``put``. Prints every run, the median MB/s of each, and their ratio.

Target: ours >= 0.9x plain ``sftp -b`` (exit 1 below it; 2 when sshd cannot run here). For
information, ``sftp -b -c aes128-gcm@openssh.com`` too: OpenSSH prefers chacha20-poly1305,
ours AES-GCM (faster in asyncssh, see ``sftp.ENCRYPTION_ALGS``); this shows the gap with the
cipher out of the picture. Ours also fsyncs; ``sftp``'s ``put`` does not.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import asyncssh  # noqa: E402

from sftpd_agent.config import RemoteSettings  # noqa: E402
from sftpd_agent.remote.sftp import connect  # noqa: E402
from tests.servers import CHROOT_BASE, SSHD, start_sshd  # noqa: E402

TARGET_RATIO = 0.9
MB = 1_000_000  # throughput in MB/s, decimal like sftp's own progress meter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    args = parser.parse_args()
    if not SSHD.exists() or os.geteuid() != 0:
        print(f"needs root and {SSHD} (sshd with ChrootDirectory)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    CHROOT_BASE.mkdir(mode=0o755, exist_ok=True)
    chroot = Path(tempfile.mkdtemp(prefix="bench-", dir=CHROOT_BASE))
    chroot.chmod(0o755)
    (chroot / "Send").mkdir()
    process: subprocess.Popen[bytes] | None = None
    try:
        client_key, authorized, host_key, host_line = _keys(work)
        started = start_sshd(work, chroot, host_key, authorized)
        if started is None:
            print((work / "sshd.log").read_text(errors="replace")[-2000:], file=sys.stderr)
            return 2
        process, port = started
        known_hosts = work / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_line}\n")
        source = _random_file(work / "campaign.bin", args.size_mb * MB)
        expected = _sha256(source)
        settings = RemoteSettings(host="127.0.0.1", port=port, username=_user(),
                                  private_key=client_key, known_hosts=known_hosts)
        openssh_argv = ["sftp", "-q", "-F", "/dev/null", "-i", str(client_key),
                        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                        "-o", f"UserKnownHostsFile={known_hosts}",
                        "-o", "GlobalKnownHostsFile=/dev/null",
                        "-o", "StrictHostKeyChecking=yes", "-P", str(port),
                        "-b", str(_batch(work, source)), f"{_user()}@127.0.0.1"]
        same_cipher_argv = [*openssh_argv[:1], "-c", "aes128-gcm@openssh.com",
                            *openssh_argv[1:]]
        rates: dict[str, list[float]] = {"SftpRemote.upload": [], "sftp -b": [],
                                         "sftp -b -c aes128-gcm": []}
        size = source.stat().st_size
        print(f"{size / MB:.0f} MB to OpenSSH sshd on 127.0.0.1:{port}, {args.runs} runs each")
        for run in range(1, args.runs + 1):
            seconds = asyncio.run(_ours(settings, source))
            if _sha256(chroot / "Send" / "ours.tmp") != expected:
                print("our upload is not byte-identical", file=sys.stderr)
                return 1
            rates["SftpRemote.upload"].append(size / MB / seconds)
            (chroot / "Send" / "ours.tmp").unlink()
            for label, argv in (("sftp -b", openssh_argv),
                                ("sftp -b -c aes128-gcm", same_cipher_argv)):
                rates[label].append(size / MB / _theirs(argv))
                (chroot / "Send" / "openssh.tmp").unlink()
            print(f"run {run}: " + "   ".join(f"{label} {values[-1]:6.1f} MB/s"
                                            for label, values in rates.items()))
        medians = {label: statistics.median(values) for label, values in rates.items()}
        ours = medians["SftpRemote.upload"]
        print("median: " + ", ".join(f"{label} {value:.1f} MB/s"
                                     for label, value in medians.items()))
        ratio = ours / medians["sftp -b"]
        print(f"ratio to sftp -b: {ratio:.2f} (target >= {TARGET_RATIO}); "
              f"to sftp -b -c aes128-gcm: {ours / medians['sftp -b -c aes128-gcm']:.2f}")
        return 0 if ratio >= TARGET_RATIO else 1
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(chroot, ignore_errors=True)
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)


async def _ours(settings: RemoteSettings, source: Path) -> float:
    """Seconds for a whole session: connect, upload (fsync included), close."""
    started = time.perf_counter()
    remote = await connect(settings)
    try:
        await remote.upload(source, "/Send/ours.tmp")
    finally:
        await remote.close()
    return time.perf_counter() - started


def _theirs(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, timeout=600, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _batch(work: Path, source: Path) -> Path:
    batch = work / "batch"
    batch.write_text(f"put {source} /Send/openssh.tmp\n")
    return batch


def _keys(work: Path) -> tuple[Path, Path, Path, str]:
    """Client key (0600), its authorized_keys, the host key, the host key's public line."""
    client = asyncssh.generate_private_key("ssh-ed25519")
    client_key = work / "id_ed25519"
    client.write_private_key(client_key)
    client_key.chmod(0o600)
    authorized = work / "authorized_keys"
    authorized.write_bytes(client.export_public_key("openssh"))
    host = asyncssh.generate_private_key("ssh-ed25519")
    host_key = work / "ssh_host_ed25519_key"
    host.write_private_key(host_key)
    host_key.chmod(0o600)
    host_line = " ".join(host.export_public_key("openssh").decode().split()[:2])
    return client_key, authorized, host_key, host_line


def _random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        for start in range(0, size, 1 << 20):
            out.write(os.urandom(min(1 << 20, size - start)))
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


if __name__ == "__main__":
    sys.exit(main())
