"""A TCP relay that adds a fixed one-way delay in each direction: a slow network on loopback, in user space.

For tests and ``scripts/remote_bench.py`` where ``tc netem`` is not available (no ``sch_netem`` in the kernel,
or no root). It delays bytes, in order, by ``delay`` seconds per direction (RTT + 2·delay); it cannot lose
packets (TCP would hide a loss as a retransmission stall, which only netem reproduces).
"""

from __future__ import annotations

import asyncio
import threading
import time


class DelayProxy:
    """Listen on 127.0.0.1:<free port>, relay to ``target`` with ``delay`` seconds each way."""

    def __init__(self, target: tuple[str, int], delay: float):
        self.target, self.delay = target, float(delay)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(ready)), daemon=True,
                                        name="delay-proxy")
        self._thread.start()
        ready.wait(10)
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    async def _main(self, ready: threading.Event) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        async with server:
            await self._stop.wait()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(send())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((time.perf_counter() + self.delay, data))
        except OSError:
            pass
        queue.put_nowait((0.0, None))
        await asyncio.gather(sender, return_exceptions=True)
