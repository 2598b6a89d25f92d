"""The whole service (``vmpooler.app.Service``: API and manager) in the test process: its IOLoop
runs in a thread of its own, so a test can block on HTTP, a provider or the database while the
service keeps working. Shared by the reliability and vSphere tests."""
import asyncio
import threading

from tests.api.conftest import Client
from vmpooler.app import Service
from vmpooler.db.database import Database


class InProcessService:
    """``Service(config)`` listening on 127.0.0.1:<free port>, started by the constructor.
    ``client`` speaks HTTP to it; ``get``/``post``/``delete`` take paths below /api/v1."""

    def __init__(self, config, start_timeout: float = 30, role: str = "all"):
        self.config = config
        self.service = Service(config, role)
        self.ready, self.error = threading.Event(), None
        self.loop = self.stopped = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="vmpooler-service",
                                       daemon=True)
        self.thread.start()
        if not self.ready.wait(start_timeout) or self.error is not None:
            raise AssertionError(f"the service did not start: {self.error!r}")
        self.port = self.service.port
        self.client = Client(self.port)

    async def _main(self):
        self.loop, self.stopped = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self.service.start("127.0.0.1", 0)
        except Exception as error:  # reported by __init__
            self.error = error
            self.ready.set()
            return
        self.ready.set()
        await self.stopped.wait()
        await self.service.stop()

    @property
    def db(self) -> Database:
        return self.service.db

    @property
    def dummy(self):
        return self.service.manager.runner.providers["dummy"]

    def reconcile_now(self) -> None:
        """Make the manager's next pass a reconcile pass."""
        self.loop.call_soon_threadsafe(setattr, self.service.manager, "next_reconcile", 0)

    def stop(self, timeout: float = 30) -> None:
        """Stop as SIGTERM would (Service.stop) and wait for the thread; idempotent."""
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the service did not stop within {timeout}s"

    # the API, over HTTP: paths below /api/v1
    def get(self, path: str):
        return self.client.get(f"/api/v1{path}")

    def post(self, path: str):
        return self.client.post(f"/api/v1{path}")

    def delete(self, path: str):
        return self.client.delete(f"/api/v1{path}")
