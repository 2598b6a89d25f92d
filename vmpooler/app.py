"""Assembling the service: database, providers, pool manager and HTTP API on one IOLoop."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal

from sqlalchemy.engine import make_url
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from vmpooler.api.routes import make_app
from vmpooler.auth import build_auth_store
from vmpooler.context import Context
from vmpooler.db.database import Database
from vmpooler.manager.scheduler import Manager
from vmpooler.providers.registry import REGISTRY

log = logging.getLogger("vmpooler")


class Service:
    """One running pooler. ``start`` upgrades the schema, listens, and starts the manager."""

    def __init__(self, config, manage: bool = True, registry=REGISTRY):
        self.config = config
        self.db = Database(config.database_url)
        self.manager = Manager(config, self.db, registry.build(config)) if manage else None
        self.executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="auth")
        self.context = Context(
            config=config, db=self.db, auth=build_auth_store(config), executor=self.executor,
            wake=self.manager.wake if self.manager else (lambda: None),
            provider_health=self.manager.health if self.manager else dict)
        self.app = make_app(self.context)
        self.server = None
        self.port = None

    async def start(self, host: str = "127.0.0.1", port: int = 4567) -> None:
        self.db.upgrade()
        # Bodies are limited by the application (413 JSON for any body over max_body_size).
        self.server = HTTPServer(self.app, xheaders=self.config.settings["behind_proxy"])
        sockets = bind_sockets(port, host)
        self.port = sockets[0].getsockname()[1]
        self.server.add_sockets(sockets)
        log.info("%s listening on http://%s:%d/api/v1 (database %s)", self.config.settings["site_name"],
                 host, self.port, _safe_url(self.db.url))
        if self.manager is not None:
            await self.manager.start()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.manager is not None:
            await self.manager.stop()
        if self.server is not None:
            await self.server.close_all_connections()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.db.dispose()


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    return make_url(url).render_as_string(hide_password=True)


async def serve(config, host: str, port: int) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    for warning in config.warnings:
        log.warning("config: %s", warning)
    service = Service(config)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await service.start(host, port)
    await stopped.wait()
    log.info("stopping")
    await service.stop()
    log.info("stopped")
