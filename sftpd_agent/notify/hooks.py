"""Running a hook: one command per notification, the event's JSON on its stdin.

A hook sees an allow-list of the agent's environment (:func:`hook_environment`: never a
secret), runs in its own session under a timeout, and its whole process group is killed when
the time runs out, when the agent stops, and once it has exited (what it left behind would
hold the agent's memory, tasks or the output pipes). Its output is read as a bounded tail
(the last 4 KiB of stdout and of stderr, numbers masked), so a hook that writes gigabytes
costs no memory; the tail is the failure's detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..rules.masking import mask_numbers

HOOK_ENV_KEYS = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ",
                           "TMPDIR"})  # and LC_*: see hook_environment
HOOK_TAIL_BYTES = 4096  # of a hook's stdout and of its stderr: kept for the failure's detail
KILL_WAIT_SECONDS = 5.0  # for a killed hook to be reaped
PIPE_GRACE_SECONDS = 2.0  # after the hook's exit, to read what is left in its pipes


def allowed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` a program the agent runs may see: :data:`HOOK_ENV_KEYS` and
    ``LC_*`` (no secret, no socket of systemd's)."""
    return {key: value for key, value in environ.items()
            if key in HOOK_ENV_KEYS or key.startswith("LC_")}


def hook_environment(
    event: str, campaign_id: str, notification_id: int,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What a hook sees: an allow-list of the agent's environment, plus the event.

    Only ``PATH``, ``HOME``, ``USER``, ``LOGNAME``, ``LANG``, ``LANGUAGE``, ``LC_*``, ``TZ``
    and ``TMPDIR`` are passed on: never ``CREDENTIALS_DIRECTORY``, ``SFTPD_AGENT_*`` (they
    may hold secrets), systemd's sockets or anything else a site put in the agent's
    environment. A hook that needs more gets it in its ``command`` (``/usr/bin/env K=V ...``).
    """
    env = allowed_environment(os.environ if environ is None else environ)
    env.setdefault("PATH", os.defpath)
    env["SFTPD_EVENT"] = event
    env["SFTPD_CAMPAIGN"] = campaign_id
    env["SFTPD_NOTIFICATION_ID"] = str(notification_id)
    return env


class _Tail:
    """The last ``limit`` bytes of a stream, whatever its length: the rest is discarded."""

    __slots__ = ("data", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.limit = limit
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk[-self.limit:]
        if len(self.data) > self.limit:
            del self.data[:-self.limit]

    def text(self) -> str:
        """The tail as text, numbers masked (a hook may print what it was given)."""
        text = self.data.decode("utf-8", errors="replace")
        if self.total > len(self.data):
            text = "..." + text.partition("\n")[2]  # a cut first line says nothing
        return mask_numbers(text.strip())


class _HookProtocol(asyncio.SubprocessProtocol):
    """Keeps a bounded tail of stdout and stderr as data arrives; tells when the process
    exits (``exited``, not waiting for pipes a child may hold open) and when all is closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.tails = {1: _Tail(limit), 2: _Tail(limit)}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.tails[fd].add(data if isinstance(data, bytes) else data.encode())

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass(frozen=True, slots=True)
class HookRun:
    """How a hook ended: its exit status (None: it was killed at the timeout) and output tails."""

    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str

    def last_line(self) -> str:
        """The last non-blank line of stderr, else of stdout: the hook's own last word."""
        for text in (self.stderr, self.stdout):
            line = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
            if line:
                return line.strip()
        return ""

    def detail(self) -> dict[str, str]:
        return {key: value for key, value in (("stderr", self.stderr), ("stdout", self.stdout))
                if value}


async def run_hook(
    argv: Iterable[str], stdin: bytes, *, env: Mapping[str, str], seconds: float,
    tail_bytes: int = HOOK_TAIL_BYTES,
) -> HookRun:
    """Run one hook: ``stdin`` in, at most ``tail_bytes`` of each output kept, ``seconds`` long.

    The hook runs in its own session, so its process group is the hook and everything it
    started (unless one of them made a session of its own). That group is killed (SIGKILL)
    when the time runs out, when the caller is cancelled, and also once the hook has exited:
    a hook is done when it exits, and what it left behind would hold the agent's memory and
    tasks (``MemoryMax=``, ``TasksMax=``) or the output pipes.
    """
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _HookProtocol(loop, tail_bytes), *argv,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=dict(env), start_new_session=True)
    pid = transport.get_pid()
    timed_out = False
    try:
        pipe = transport.get_pipe_transport(0)
        if isinstance(pipe, asyncio.WriteTransport):
            pipe.write(stdin)  # buffered by the transport: a hook that never reads costs no wait
            pipe.close()
        try:
            async with asyncio.timeout(seconds):
                await asyncio.shield(protocol.exited)
        except TimeoutError:
            timed_out = True
            _kill_group(pid)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_WAIT_SECONDS):
                    await asyncio.shield(protocol.exited)
        _kill_group(pid)  # whatever the hook left running
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PIPE_GRACE_SECONDS):
                await asyncio.shield(protocol.closed)
    except BaseException:
        _kill_group(pid)
        raise
    finally:
        transport.close()
    return HookRun(returncode=None if timed_out else transport.get_returncode(),
                   timed_out=timed_out, stdout=protocol.tails[1].text(),
                   stderr=protocol.tails[2].text())


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)

