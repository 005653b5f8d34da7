"""The provider's side, simulated: MTarget's SFTP server and what it does with our files.

``processing`` judges ``Send/`` files and writes ``Report/`` files (pure core, thin shell);
``server`` serves a folder over SFTP the way the provider's OpenSSH does; ``command`` is
``sftpd-agent simulate``. Used by ``sftpd-agent demo`` and the integration tests.
"""

from ..clock import Clock
from .processing import (
    JournalEntry,
    Judgement,
    Processor,
    ReportWrite,
    Row,
    SimulatorOptions,
    StepReport,
    check_send_file,
    plan_reports,
    read_journal,
    system_clock,
)
from .server import Simulator, SimulatorThread

__all__ = [
    "Clock",
    "JournalEntry",
    "Judgement",
    "Processor",
    "ReportWrite",
    "Row",
    "Simulator",
    "SimulatorOptions",
    "SimulatorThread",
    "StepReport",
    "check_send_file",
    "plan_reports",
    "read_journal",
    "system_clock",
]
