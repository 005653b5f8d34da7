"""The sd_notify client against real AF_UNIX datagram sockets, as systemd would listen."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sftpd_agent.systemd import Notifier

RECEIVE_TIMEOUT = 2.0


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Short on purpose: an AF_UNIX path must fit in 108 bytes, pytest's tmp_path may not.
    with tempfile.TemporaryDirectory(prefix="sdn") as name:
        yield Path(name)


def _listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(RECEIVE_TIMEOUT)
    return sock


@pytest.fixture
def listener(socket_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(socket_dir / "notify")
    sock = _listener(path)
    yield sock, path
    sock.close()


def _notifier(notify_socket: str, **extra: str) -> Notifier:
    return Notifier.from_environment({"NOTIFY_SOCKET": notify_socket, **extra})


def _nothing_pending(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    return False


def test_ready_with_status_sends_both_fields(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert _notifier(path).ready("polling sftp.example.net")
    assert sock.recv(4096) == b"READY=1\nSTATUS=polling sftp.example.net\n"


def test_ready_without_status_sends_only_ready(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert _notifier(path).ready()
    assert sock.recv(4096) == b"READY=1\n"


@pytest.mark.parametrize(
    ("method", "args", "expected"),
    [
        ("status", ("3 campaigns scheduled",), b"STATUS=3 campaigns scheduled\n"),
        ("watchdog", (), b"WATCHDOG=1\n"),
        ("stopping", (), b"STOPPING=1\n"),
    ],
)
def test_each_notification_is_one_exact_datagram(
    listener: tuple[socket.socket, str], method: str, args: tuple[str, ...], expected: bytes
) -> None:
    sock, path = listener
    assert getattr(_notifier(path), method)(*args) is True
    assert sock.recv(4096) == expected
    assert _nothing_pending(sock)


def test_reloading_carries_the_monotonic_clock(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert _notifier(path).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = sock.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert lines[2:] == [""]  # one trailing newline, nothing else


def test_status_text_with_newlines_stays_one_field(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert _notifier(path).status("line one\nREADY=1\r\nline three")
    assert sock.recv(4096) == b"STATUS=line one READY=1 line three\n"


def test_text_that_cannot_be_encoded_is_replaced_not_raised(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    assert _notifier(path).status("broken \ud800 surrogate")
    assert sock.recv(4096) == b"STATUS=broken ? surrogate\n"


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_any_status_text_is_delivered_as_a_single_field(text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="sdn") as name:
        path = str(Path(name) / "notify")
        with _listener(path) as sock:
            assert _notifier(path).ready(text)
            lines = sock.recv(65536).split(b"\n")
    assert lines[0] == b"READY=1"
    assert lines[-1] == b""
    body = lines[1:-1]
    assert len(body) == (1 if text else 0)
    if text:
        assert body[0].startswith(b"STATUS=")


def test_abstract_socket() -> None:
    name = f"sftpd-agent-test-{uuid.uuid4().hex}"
    with _listener("\0" + name) as sock:
        notifier = _notifier("@" + name)
        assert notifier.enabled
        assert notifier.ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up\n"


@pytest.mark.parametrize("value", [None, "", "@", "vsock:2:1234", "relative/path"])
def test_no_usable_socket_is_a_silent_no_op(value: str | None) -> None:
    environ = {} if value is None else {"NOTIFY_SOCKET": value}
    notifier = Notifier.from_environment(environ)
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.reloading() is False


def test_default_environment_is_os_environ(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert Notifier.from_environment().watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1\n"


def test_vanished_socket_is_ignored_and_logged_once(
    socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(socket_dir / "notify")
    sock = _listener(path)
    notifier = _notifier(path)
    assert notifier.ready()
    sock.close()
    os.unlink(path)  # systemd went away (or was re-executed)

    with caplog.at_level(logging.DEBUG, logger="sftpd_agent.systemd"):
        assert notifier.watchdog() is False
        assert notifier.status("still here") is False
        assert notifier.stopping() is False
    records = [r for r in caplog.records if r.name == "sftpd_agent.systemd"]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG

    # The socket comes back: notifications flow again, and a new outage is logged again.
    with _listener(path) as again:
        assert notifier.watchdog()
        assert again.recv(4096) == b"WATCHDOG=1\n"
    os.unlink(path)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="sftpd_agent.systemd"):
        assert notifier.watchdog() is False
    assert len([r for r in caplog.records if r.name == "sftpd_agent.systemd"]) == 1


def test_a_socket_that_is_not_a_socket_does_not_raise(socket_dir: Path) -> None:
    path = socket_dir / "plain-file"
    path.write_text("not a socket")
    assert _notifier(str(path)).ready() is False
    assert _notifier(str(socket_dir / ("x" * 200))).ready() is False  # too long for sun_path


def test_a_full_queue_never_blocks_the_caller(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
    notifier = _notifier(path)
    results: list[bool] = []

    def flood() -> None:
        deadline = time.monotonic() + 5.0
        for _ in range(20_000):
            results.append(notifier.status("x" * 512))
            if results[-1] is False or time.monotonic() > deadline:
                return

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    thread.join(timeout=10.0)
    assert not thread.is_alive(), "sending blocked on a full socket queue"
    assert results[0] is True
    assert results[-1] is False  # the queue filled up and the send was dropped, not awaited


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 60.0),
        ({"WATCHDOG_USEC": "1500000"}, 1.5),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "{pid}"}, 60.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "{other}"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "sixty"}, None),
        ({"WATCHDOG_PID": "{pid}"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    pid = os.getpid()
    filled = {k: v.format(pid=pid, other=pid + 1) for k, v in environ.items()}
    assert Notifier.from_environment(filled).watchdog_interval() == expected


def test_watchdog_interval_does_not_need_a_socket() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval() == 30.0
