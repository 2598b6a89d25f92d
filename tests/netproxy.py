"""A TCP proxy on loopback that delays or holds what it forwards: a database "1 ms away", or one
that stops answering mid-request, for the tests and benchmarks of code that waits on the network.

``DelayProxy(target_port, delay=0.001).start()`` listens on 127.0.0.1:<proxy.port> and forwards
each chunk in both directions after ``delay`` seconds; ``pause()`` holds every byte until
``resume()``. It runs its own asyncio loop in a daemon thread and stops with ``close()``.
"""
from __future__ import annotations

import asyncio
import threading


class DelayProxy:
    def __init__(self, target_port: int, delay: float = 0.0, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.delay = delay
        self.port = None
        self._loop = asyncio.new_event_loop()
        self._flowing = None  # asyncio.Event, made on the proxy's loop
        self._server = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)

    def start(self) -> "DelayProxy":
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def pause(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def close(self) -> None:
        async def shut():
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def begin():
            self._flowing = asyncio.Event()
            self._flowing.set()
            self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(begin())
        self._started.set()
        self._loop.run_forever()

    async def _connection(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer),
                             return_exceptions=True)

    async def _pipe(self, reader, writer) -> None:
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._flowing.wait()
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
