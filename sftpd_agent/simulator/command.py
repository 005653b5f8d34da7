"""``sftpd-agent simulate``: the provider simulator on its own, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from pathlib import Path

from ..errors import ConfigError, ExitCode
from .processing import SimulatorOptions
from .server import Simulator

DEFAULT_LISTEN = ("127.0.0.1", 2222)
DEFAULT_SERVICE_ID = "12345"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, metavar="DIR",
                        help="folder holding Send/ and Report/ (created when missing)")
    parser.add_argument("--listen", type=_address, default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help="where to serve SFTP (default 127.0.0.1:2222; port 0: any free)")
    parser.add_argument("--authorized-keys", type=Path, metavar="FILE",
                        help="public keys allowed to log in (required unless --no-server)")
    parser.add_argument("--host-key", type=Path, metavar="FILE",
                        help="host private key; created when missing (default: a new one)")
    parser.add_argument("--no-server", action="store_true",
                        help="only process DIR, exposed by another SFTP server")
    parser.add_argument("--seed", type=int, help="make failures, opt-outs and replies repeatable")
    parser.add_argument("--service-id", metavar="ID",
                        help="the SERVICEID file names must carry (default: the --config "
                             f"file's service_id, else {DEFAULT_SERVICE_ID})")
    parser.add_argument("--ack-delay", type=_seconds, metavar="S",
                        help="seconds from .done to the ACK report")
    parser.add_argument("--failure-share", type=_share, metavar="X",
                        help="share of rows the ACK reports failed (0..1)")
    parser.add_argument("--stop-share", type=_share, metavar="X",
                        help="share of reached recipients who send STOP (0..1)")
    parser.add_argument("--mo-share", type=_share, metavar="X",
                        help="share of reached recipients who reply (0..1)")
    parser.add_argument("--interval", type=_seconds, default=0.5, metavar="S",
                        help="seconds between processing steps (default 0.5)")


def run(ns: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM: 0; a bad argument: 2, with one line on stderr."""
    try:
        simulator = _simulator(ns)
        asyncio.run(_serve(simulator))
    except ConfigError as exc:
        print(f"sftpd-agent simulate: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK


def _simulator(ns: argparse.Namespace) -> Simulator:
    given = {
        "ack_delay": ns.ack_delay, "ack_failure_share": ns.failure_share,
        "stop_share": ns.stop_share, "mo_share": ns.mo_share,
    }
    options = SimulatorOptions(service_id=ns.service_id or DEFAULT_SERVICE_ID, seed=ns.seed,
                               **{key: value for key, value in given.items()
                                  if value is not None})
    if not ns.no_server and ns.authorized_keys is None:
        raise ConfigError("--authorized-keys is required unless --no-server")
    if ns.authorized_keys is not None and not ns.authorized_keys.is_file():
        raise ConfigError(f"--authorized-keys {ns.authorized_keys}: no such file")
    try:
        ns.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--root {ns.root}: {exc.strerror}") from exc
    host, port = ns.listen
    return Simulator(ns.root, host=host, port=port, authorized_keys=ns.authorized_keys,
                     host_key=ns.host_key, options=options, serve=not ns.no_server,
                     interval=ns.interval)


async def _serve(simulator: Simulator) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with simulator:
        if simulator.serve:
            print(f"listening on {_format(simulator.host, simulator.port)}", flush=True)
            print(f"host key {simulator.host_key_fingerprint}", flush=True)
        else:
            print(f"processing {simulator.root} (no server)", flush=True)
        await stopping.wait()


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value
