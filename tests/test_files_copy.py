"""``files.append_copy``: a range of one file appended to another by the kernel, or read and
written where the kernel, the file system or the stream refuses; the writer left at its end."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from sftpd_agent.files import append_copy

DATA = bytes(range(256)) * 9000  # 2.3 MB: over two read blocks


def copied(tmp_path: Path, start: int, count: int) -> bytes:
    source = tmp_path / "source"
    source.write_bytes(DATA)
    target = tmp_path / "target"
    with source.open("rb") as reader, target.open("wb") as out:
        out.write(b"before;")  # buffered, not flushed yet
        append_copy(reader, out, start, count)
        out.write(b";after")  # the writer's position follows the copy
        assert out.tell() == len(b"before;") + count + len(b";after")
    return target.read_bytes()


@pytest.mark.parametrize(("start", "count"), [(0, len(DATA)), (1000, 5), (7, len(DATA) - 7),
                                              (0, 0)])
def test_a_range_is_appended_after_what_was_written(
    tmp_path: Path, start: int, count: int
) -> None:
    assert copied(tmp_path, start, count) == (
        b"before;" + DATA[start:start + count] + b";after")


@pytest.mark.parametrize("refusal", ["refused", "short"])
def test_what_the_kernel_does_not_copy_is_read_and_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    real = os.copy_file_range
    calls = []

    def kernel(src: int, dst: int, count: int, offset_src: int | None = None) -> int:
        calls.append(count)
        if refusal == "refused":
            raise OSError(errno.EXDEV, "cross-device")
        return 0 if len(calls) > 1 else real(src, dst, min(count, 4096), offset_src)

    monkeypatch.setattr(os, "copy_file_range", kernel)
    assert copied(tmp_path, 3, len(DATA) - 10) == b"before;" + DATA[3:-7] + b";after"
    assert calls


def test_into_a_stream_without_a_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(DATA)
    out = io.BytesIO()
    with source.open("rb") as reader:
        append_copy(reader, out, 10, 100_000)
    assert out.getvalue() == DATA[10:100_010]


def test_a_source_shorter_than_the_range_is_named(tmp_path: Path) -> None:
    source = tmp_path / "rows-0.csv"
    source.write_bytes(b"abc")
    with source.open("rb") as reader, pytest.raises(ValueError, match=r"rows-0\.csv: ended"):
        append_copy(reader, io.BytesIO(), 0, 10)
