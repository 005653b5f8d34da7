"""Logs: JSON lines off a terminal, stdlib loggers routed, personal data masked."""

from __future__ import annotations

import io
import json
import logging

import pytest

from sftpd_agent.logs import bind_campaign, configure, get_logger


@pytest.fixture
def captured() -> io.StringIO:
    stream = io.StringIO()
    configure(stream=stream, json=True)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_events_are_json_lines_with_level_and_time(captured: io.StringIO) -> None:
    get_logger().info("campaign_received", file="promo.csv", rows=12)
    (line,) = lines(captured)
    assert line["event"] == "campaign_received"
    assert line["level"] == "info" and line["rows"] == 12 and "timestamp" in line


def test_campaign_id_is_bound_to_every_line_in_context(captured: io.StringIO) -> None:
    log = get_logger()
    with bind_campaign("promo"):
        log.info("first")
        logging.getLogger("asyncssh").warning("channel closed")
    log.info("outside")
    first, routed, outside = lines(captured)
    assert first["campaign_id"] == "promo" and routed["campaign_id"] == "promo"
    assert "campaign_id" not in outside


def test_standard_library_loggers_go_through_the_same_pipeline(captured: io.StringIO) -> None:
    logging.getLogger("apscheduler.scheduler").warning("Run time of job %s was missed", "poll")
    for chatty in ("asyncssh", "apscheduler.executors.default", "watchfiles.main"):
        logging.getLogger(chatty).info("chatter at info is dropped (one line per poll)")
    (line,) = lines(captured)
    assert line["event"] == "Run time of job poll was missed"
    assert line["logger"] == "apscheduler.scheduler"


def test_phone_numbers_texts_and_secrets_are_masked(captured: io.StringIO) -> None:
    get_logger().warning(
        "row_rejected", msisdn="+33612345678", msg="Bonjour Zoé, votre code est 1234",
        password="hunter2", detail="number +33612345678 and 0612345678 refused",
    )
    logging.getLogger("asyncssh").warning("auth for +447700900123 failed")
    raw = captured.getvalue()
    for secret in ("+33612345678", "0612345678", "hunter2", "Bonjour", "+447700900123"):
        assert secret not in raw
    line, routed = lines(captured)
    assert line["msisdn"] == "+33612****78"
    assert line["msg"] == "<32 characters>"
    assert line["password"] == "***"
    assert "+44770*****23" in str(routed["event"])


def test_console_output_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    configure(stream=stream)
    get_logger().info("hello", campaign_id="promo")
    out = stream.getvalue()
    assert "hello" in out and "promo" in out and not out.lstrip().startswith("{")
