"""The real daemon telling people: e-mail to a real SMTP server, a hook, the metrics file.

Unit tests of the queue, TLS, retries and secrets are in test_notify.py; here the daemon's
own events reach a loopback aiosmtpd server and a hook, and its metrics file parses back.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families

from sftpd_agent.simulator import SimulatorOptions
from tests.daemon_harness import Daemon, rows, wait_until, write_config
from tests.servers import SftpServer, _free_port


@pytest.fixture
def simulator_options() -> SimulatorOptions:
    return SimulatorOptions(seed=9, lock_seconds=0, ack_delay=0, report_steps=1,
                            report_interval=0, rewrite_step=0, stop_share=0.2, mo_share=0.2)


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, ready_timeout=5)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def test_events_reach_mail_hooks_and_metrics(
    tmp_path: Path, openssh: SftpServer, mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox
    hook_out = tmp_path / "hook.jsonl"
    hook = tmp_path / "hook.py"
    hook.write_text("import json, os, sys\n"
                    f"with open({str(hook_out)!r}, 'a') as out:\n"
                    "    out.write(json.dumps({'env': os.environ['SFTPD_EVENT'], "
                    "'event': json.load(sys.stdin)}) + '\\n')\n")
    metrics = tmp_path / "metrics" / "sftpd_agent.prom"
    metrics.parent.mkdir()
    config = write_config(tmp_path, openssh, metrics={"textfile": str(metrics)})
    with config.open("a", encoding="utf-8") as out:
        out.write(f'[notify.email]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n'
                  'starttls = false\nsender = "agent@example.net"\nto = ["ops@example.net"]\n'
                  'events = ["campaign.held", "campaign.reported", "optout.received"]\n'
                  '[[notify.hooks]]\nevents = ["campaign.held", "optout.received"]\n'
                  f'command = [{json.dumps(sys.executable)}, {json.dumps(str(hook))}]\n'
                  'timeout_seconds = 10\n')
    daemon = Daemon(config, tmp_path / "agent", openssh)
    try:
        daemon.start()
        daemon.drop("bad.csv", "a;0612;Shop;x\r\n")
        daemon.drop("good.csv", rows(30))
        openssh.clock.advance(5)
        wait_until(lambda: daemon.state("good") == "reported", what="reported")
        openssh.clock.advance(5)
        wait_until(lambda: len(box.messages) >= 3, what="three mails")
        subjects = sorted(str(m["Subject"]) for m in box.messages)
        assert any("campaign bad held" in s for s in subjects), subjects
        assert any("campaign good delivery report" in s for s in subjects), subjects
        assert any("opt-out" in s for s in subjects), subjects
        wait_until(lambda: hook_out.exists() and len(hook_out.read_text().splitlines()) >= 2,
                   what="the hook")
        seen = [json.loads(line) for line in hook_out.read_text().splitlines()]
        assert {s["env"] for s in seen} == {"campaign.held", "optout.received"}
        assert all(s["env"] == s["event"]["event"] for s in seen)

        def parsed() -> dict[str, float]:
            if not metrics.exists():
                return {}
            return {f"{s.name}{sorted(s.labels.items())}": s.value
                    for family in text_string_to_metric_families(metrics.read_text())
                    for s in family.samples}

        wait_until(lambda: parsed().get("sftpd_agent_campaigns[('state', 'reported')]") == 1,
                   what="metrics")
        figures = parsed()
        assert figures["sftpd_agent_campaigns[('state', 'held')]"] == 1
        assert figures["sftpd_agent_rows_sent_total[]"] == 30
        assert figures["sftpd_agent_upload_bytes_total[]"] > 0
        assert figures["sftpd_agent_remote_up[]"] == 1
        assert daemon.stop() == 0
    finally:
        daemon.kill()
