"""Benchmark: uploading a 100 MB file with ``SftpRemote.upload`` against OpenSSH's ``sftp -b``,
on OpenSSH's sshd and on ProFTPD's mod_sftp.

    python benchmarks/upload.py [--server openssh|proftpd|both] [--size-mb 100] [--runs 5]
                                [--proftpd-log] [--keep DIR]

For each server (``both`` by default when ProFTPD is installed, see ``tests/proftpd.py``;
else ``openssh``): starts it on 127.0.0.1 (sshd with ``internal-sftp``, chrooted, as the
``openssh`` test fixture; ``proftpd -n`` with ``DefaultRoot``; both need root), writes a file
of random bytes, then uploads it ``--runs`` times each way, alternating:

- ours: connect, upload with fsync, close (the whole session, as ``sftp -b`` does it);
- ``sftp -b -c CIPHER`` with ``put``, CIPHER being the one ours negotiated with that server
  (printed): the comparison the targets are about, the cipher out of the picture;
- plain ``sftp -b`` (OpenSSH's own cipher preference, chacha20-poly1305 first), for
  information.

Prints every run, the medians in MB/s, and the ratios beside their targets: ours >= 1.0x
``sftp -b`` with the same cipher against OpenSSH, >= 0.9x against ProFTPD (which offers no
``limits@openssh.com``: the write size is ours to choose). Exit 1 when a target is missed,
2 when a server cannot run here. Ours fsyncs where the server offers it (both do); ``put``
does not. Each transfer starts after SETTLE_SECONDS of quiet (see there).

ProFTPD runs without ``SFTPLog``, as Debian's sample config has it; ``--proftpd-log`` turns
it on, and costs ours more than ``sftp``: mod_sftp logs every SSH_MSG_IGNORE, which asyncssh
sends before each packet.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import asyncssh  # noqa: E402

from sftpd_agent.config import RemoteSettings  # noqa: E402
from sftpd_agent.remote.sftp import connect  # noqa: E402
from tests import proftpd  # noqa: E402
from tests.servers import (  # noqa: E402
    CHROOT_BASE,
    SSHD,
    start_sshd,
    stop_server,
    write_client_key,
)

TARGETS = {"openssh": 1.0, "proftpd": 0.9}  # ours / sftp -b with the same cipher
MB = 1_000_000  # throughput in MB/s, decimal like sftp's own progress meter
# Quiet before each timed transfer: after a session ends, ProFTPD's standalone parent sleeps
# in 200 ms steps before it accepts the next connection (0.4 s seen here), which the next
# transfer would pay if it came at once, whichever way it is.
SETTLE_SECONDS = 1.0
OURS, SAME, PLAIN = "SftpRemote.upload", "sftp -b -c CIPHER", "sftp -b"


@dataclass(frozen=True)
class Served:
    """A running server: where it listens, the folder it shows as ``/``, how to reach it."""

    kind: str
    port: int
    root: Path
    known_hosts: Path


class Unavailable(Exception):
    """The server cannot run here."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "both" if proftpd.unavailable() is None else "openssh"
    parser.add_argument("--server", choices=["openssh", "proftpd", "both"], default=default,
                        help=f"default here: {default}")
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--proftpd-log", action="store_true",
                        help="ProFTPD with SFTPLog (a line per SSH_MSG_IGNORE)")
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    args = parser.parse_args()
    kinds = ["openssh", "proftpd"] if args.server == "both" else [args.server]
    work = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    try:
        client_key, authorized = write_client_key(work)
        source = _random_file(work / "campaign.bin", args.size_mb * MB)
        missed = []
        for kind in kinds:
            try:
                with _serve(kind, work, authorized, args.proftpd_log) as served:
                    ratio = _compare(served, client_key, source, args.runs)
            except Unavailable as exc:
                print(f"{kind}: cannot run here: {exc}", file=sys.stderr)
                return 2
            if ratio is None or ratio < TARGETS[kind]:
                missed.append(kind)
        if missed:
            print(f"target missed: {', '.join(missed)}")
        return 1 if missed else 0
    finally:
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def _compare(served: Served, client_key: Path, source: Path, runs: int) -> float | None:
    """Run the three ways ``runs`` times, print them; ours / same-cipher sftp (None: broken)."""
    size = source.stat().st_size
    expected = _sha256(source)
    settings = RemoteSettings(host="127.0.0.1", port=served.port, username=_user(),
                              private_key=client_key, known_hosts=served.known_hosts)
    cipher, block, window = asyncio.run(_negotiated(settings))
    base = ["sftp", "-q", "-F", "/dev/null", "-i", str(client_key),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={served.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-P", str(served.port), "-b", str(_batch(source)), f"{_user()}@127.0.0.1"]
    theirs = {SAME: [base[0], "-c", cipher, *base[1:]], PLAIN: base}
    rates: dict[str, list[float]] = {OURS: [], SAME: [], PLAIN: []}
    print(f"\n{served.kind}: {size / MB:.0f} MB to 127.0.0.1:{served.port}, {runs} runs each; "
          f"ours negotiates {cipher}, so {SAME} is sftp -b -c {cipher}; ours writes "
          f"{block // 1024} KiB blocks, {window} in flight")
    for run in range(1, runs + 1):
        time.sleep(SETTLE_SECONDS)
        seconds = asyncio.run(_ours(settings, source))
        uploaded = served.root / "Send" / "ours.tmp"
        if _sha256(uploaded) != expected:
            print(f"{served.kind}: our upload is not byte-identical", file=sys.stderr)
            return None
        uploaded.unlink()
        rates[OURS].append(size / MB / seconds)
        for label, argv in theirs.items():
            time.sleep(SETTLE_SECONDS)
            rates[label].append(size / MB / _theirs(argv))
            (served.root / "Send" / "openssh.tmp").unlink()
        print(f"  run {run}: " + "   ".join(f"{label} {values[-1]:6.1f} MB/s"
                                              for label, values in rates.items()))
    medians = {label: statistics.median(values) for label, values in rates.items()}
    print("  median: " + ", ".join(f"{label} {value:.1f} MB/s"
                                   for label, value in medians.items()))
    ratio = medians[OURS] / medians[SAME]
    target = TARGETS[served.kind]
    verdict = "met" if ratio >= target else "MISSED"
    print(f"  {served.kind}: ours / sftp -b -c {cipher}: {ratio:.2f}x "
          f"(target >= {target:.1f}x: {verdict}); "
          f"ours / plain sftp -b: {medians[OURS] / medians[PLAIN]:.2f}x")
    return ratio


@contextmanager
def _serve(kind: str, work: Path, authorized: Path, sftp_log: bool) -> Iterator[Served]:
    """OpenSSH's sshd or ProFTPD serving a fresh folder holding ``Send/``."""
    if os.geteuid() != 0:
        raise Unavailable("needs root (a chrooted server)")
    folder = work / kind
    folder.mkdir()
    if kind == "openssh":
        if not SSHD.exists():
            raise Unavailable(f"{SSHD} is not installed")
        CHROOT_BASE.mkdir(mode=0o755, exist_ok=True)  # root-owned all the way up
        root = Path(tempfile.mkdtemp(prefix="bench-", dir=CHROOT_BASE))
        root.chmod(0o755)
    else:
        reason = proftpd.unavailable()
        if reason is not None:
            raise Unavailable(reason)
        root = folder / "root"
        root.mkdir()
    (root / "Send").mkdir()
    process: subprocess.Popen[bytes] | None = None
    try:
        if kind == "openssh":
            host = asyncssh.generate_private_key("ssh-ed25519")
            host.write_private_key(folder / "host_key")
            (folder / "host_key").chmod(0o600)
            started = start_sshd(folder, root, folder / "host_key", authorized)
            if started is None:
                log = (folder / "sshd.log").read_text(errors="replace")[-2000:]
                raise Unavailable(f"sshd did not start:\n{log}")
            process, port = started
        else:
            host = proftpd.write_host_key(folder / "host_key")
            try:
                process, port = proftpd.start_proftpd(folder, root, folder / "host_key",
                                                      authorized, sftp_log=sftp_log)
            except RuntimeError as exc:
                raise Unavailable(str(exc)) from None
        known_hosts = folder / "known_hosts"
        algorithm, blob = host.export_public_key("openssh").decode().split()[:2]
        known_hosts.write_text(f"[127.0.0.1]:{port} {algorithm} {blob}\n")
        yield Served(kind, port, root, known_hosts)
    finally:
        if process is not None:
            stop_server(process)
        shutil.rmtree(root, ignore_errors=True)


async def _negotiated(settings: RemoteSettings) -> tuple[str, int, int]:
    """The cipher our session gets from this server (asyncssh's name is OpenSSH's), the
    size of its write requests and how many it keeps in flight."""
    remote = await connect(settings)
    try:
        return (str(remote._conn.get_extra_info("send_cipher")), remote._write_block,
                remote._write_window)
    finally:
        await remote.close()


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


def _batch(source: Path) -> Path:
    batch = source.parent / "batch"
    batch.write_text(f"put {source} /Send/openssh.tmp\n")
    return batch


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
