"""A loopback TCP proxy that breaks the link on demand, for fault tests.

``FaultProxy`` listens on 127.0.0.1 (a free port) and forwards each connection to a target.
Between the two it can:

- ``cut()``: abort every live connection now, as a network cut or a NAT timeout would;
- ``stall()`` / ``resume()``: stop forwarding bytes while keeping both sockets open (a dead
  link that TCP does not notice), then carry on;
- ``throttle(rate)``: forward at most ``rate`` bytes per second in each direction of each
  connection (a slow but live link); ``throttle(None)`` lifts it;
- cut at random: with ``seed`` and ``cut_after=(low, high)``, each new connection is aborted
  after a random number of bytes (both directions counted) drawn in that range, until
  ``max_cuts`` connections have been cut; later ones are forwarded faithfully.

Use it with ``async with FaultProxy(host, port) as proxy:`` and connect to ``proxy.port``;
leaving the block closes the listener and every connection. Nothing else ends its loops: they
stop when their connection or the proxy does. ``ProxyThread`` runs one in a thread of its own,
for a daemon in another process.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field
from types import TracebackType

CHUNK = 64 * 1024
UPSTREAM_TIMEOUT = 10.0


@dataclass(eq=False)  # identity: kept in a set
class _Link:
    """One proxied connection: both sides and the bytes it may still carry."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    budget: int | None  # bytes before a planned cut; None: no cut planned
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    aborted: bool = False

    def abort(self) -> bool:
        """Abort both sides; whether this call did it (False: it was already done)."""
        if self.aborted:
            return False
        self.aborted = True
        for writer in (self.client, self.server):
            writer.transport.abort()
        return True


class FaultProxy:
    """A TCP forwarder from 127.0.0.1:<port> to ``host``:``target_port`` that breaks on demand."""

    def __init__(self, host: str, target_port: int, *, seed: int | None = None,
                 cut_after: tuple[int, int] | None = None, max_cuts: int = 0) -> None:
        if cut_after is not None and not 0 < cut_after[0] <= cut_after[1]:
            raise ValueError(f"cut_after must be 0 < low <= high, got {cut_after}")
        self.host = host
        self.target_port = target_port
        self._random = random.Random(seed)
        self._cut_after = cut_after
        self._max_cuts = max_cuts
        self._planned = 0  # connections given a cut budget so far
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._rate: float | None = None
        self.accepted = 0  # connections accepted since start
        self.cuts = 0  # connections aborted by cut() or a random cut

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._links)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Stop listening and abort every connection; bounded."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._flowing.set()
        for link in list(self._links):
            link.abort()
            for pump in link.tasks:
                pump.cancel()
        handlers = list(self._handlers)
        if handlers:  # each ends once its pumps have (or its upstream connect gives up)
            _done, late = await asyncio.wait(handlers, timeout=UPSTREAM_TIMEOUT + 1)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def cut(self) -> int:
        """Abort every live connection now; how many were cut."""
        cut = sum(link.abort() for link in list(self._links))
        self.cuts += cut
        return cut

    def stall(self) -> None:
        """Stop forwarding (sockets stay open, bytes wait) until ``resume()``."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def throttle(self, rate: float | None) -> None:
        """Forward at most ``rate`` bytes per second per direction; None: full speed."""
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._rate = rate

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def _budget(self) -> int | None:
        if self._cut_after is None or self._planned >= self._max_cuts:
            return None
        self._planned += 1
        return self._random.randint(*self._cut_after)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.accepted += 1
        try:
            try:
                async with asyncio.timeout(UPSTREAM_TIMEOUT):
                    up_reader, up_writer = await asyncio.open_connection(
                        self.host, self.target_port)
            except OSError:
                writer.transport.abort()
                return
            link = _Link(writer, up_writer, self._budget())
            self._links.add(link)
            try:
                link.tasks = [asyncio.create_task(self._pump(reader, up_writer, link)),
                              asyncio.create_task(self._pump(up_reader, writer, link))]
                await asyncio.wait(link.tasks)
            finally:
                link.abort()
                for pump in link.tasks:
                    pump.cancel()
                await asyncio.gather(*link.tasks, return_exceptions=True)
                self._links.discard(link)
        finally:
            self._handlers.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: _Link) -> None:
        """Forward one direction until EOF, an error, a cut or the proxy's stop."""
        try:
            while data := await reader.read(CHUNK if self._rate is None
                                            else max(1, min(CHUNK, int(self._rate / 20)))):
                await self._flowing.wait()
                if link.budget is not None:
                    if len(data) >= link.budget:
                        writer.write(data[:link.budget])
                        link.budget = 0
                        self.cuts += link.abort()
                        return
                    link.budget -= len(data)
                writer.write(data)
                await writer.drain()
                if self._rate is not None:
                    await asyncio.sleep(len(data) / self._rate)
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            link.abort()  # one side is gone: so is the other

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


class ProxyThread:
    """A FaultProxy in its own thread and event loop, for a daemon in another process."""

    def __init__(self, port: int, **options: object) -> None:
        self.loop = asyncio.new_event_loop()
        self.proxy = FaultProxy("127.0.0.1", port, **options)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(timeout=10)
        return self.proxy

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
