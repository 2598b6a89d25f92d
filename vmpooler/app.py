"""Assembling the service: database, providers, pool manager and HTTP API on one IOLoop."""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import signal
import uuid
from typing import Optional

from sqlalchemy.engine import make_url
from tornado.netutil import bind_sockets

from vmpooler.api.routes import make_app, make_metrics_app
from vmpooler.api.server import BoundedHTTPServer
from vmpooler.auth import build_auth_store
from vmpooler.context import Context
from vmpooler.db import heartbeat
from vmpooler.db.database import Database, StoreUnavailable
from vmpooler.db.schema import SchemaTooNew, UpgradeFailed
from vmpooler.db.notify import CHANGE_INTERVAL, CHANGED, WAKE, Listener, Sender
from vmpooler.manager.leader import Leadership, describe_lease
from vmpooler.manager.scheduler import Manager
from vmpooler.metrics import build_metrics
from vmpooler.dns.registry import REGISTRY as DNS_REGISTRY
from vmpooler.providers.registry import REGISTRY

log = logging.getLogger("vmpooler")


class ListenError(Exception):
    """The service cannot listen on its address (``serve`` reports it in one line and exits 1)."""


#: what ``vmpooler serve --role`` runs: the API, the pool manager (when this process leads), or both
ROLES = ("all", "api", "manager")


class Service:
    """One running pooler. ``start`` upgrades the schema, listens (roles all and api: the API;
    role manager: only the metrics endpoint and /healthcheck, when ``:prometheus:`` is configured,
    as the original's manager process does), and campaigns to run the pool manager (roles all and
    manager): with several processes on one database, exactly one of them manages at a time
    (manager/leader.py)."""

    def __init__(self, config, role: str = "all", registry=REGISTRY, dns_registry=DNS_REGISTRY):
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        self.config = config
        self.role = role
        self.db = Database(config.database_url)
        self.metrics = build_metrics(config, self.db)
        self.executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="auth")
        self.leadership: Optional[Leadership] = None
        self.manager: Optional[Manager] = None
        if role in ("all", "manager"):
            # a thread of its own: a renewal never queues behind password checks
            self.lease_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease")
            self.leadership = Leadership(self.db, config.settings.leader_lease_seconds, executor=self.lease_executor)
            manager = self.manager = Manager(config, self.db, registry.build(config), self.leadership, self.metrics,
                                             dns_plugins=dns_registry.build(config))
            self.metrics.watch(breakers=lambda: manager.runner.breakers)
        # processes sharing PostgreSQL wake the leader's manager through it, and tell each other of
        # their changes (so that no cached answer is older than a change announced); an SQLite file
        # has one process
        self.wake_sender: Optional[Sender] = None
        self.change_sender: Optional[Sender] = None
        if not self.db.is_sqlite:
            self.wake_sender = Sender(self.db, WAKE, executor=self.executor)
            self.origin = f"{os.getpid()}:{uuid.uuid4().hex[:12]}"
            self.change_sender = Sender(self.db, CHANGED, CHANGE_INTERVAL, self.executor, payload=self.origin)
        self.listener: Optional[Listener] = None
        self.context = Context(
            config=config, db=self.db, auth=build_auth_store(config), executor=self.executor, wake=self.wake,
            refill=self.refill, destroy=self.destroy,
            provider_health=self.manager.health if self.manager else dict,
            pool_waits=self.manager.backoffs.describe if self.manager else dict,
            leader=self.manager.leader if self.manager else functools.partial(describe_lease, self.db),
            manager_stalled=self.manager.stalled if self.manager else (lambda: None),
            metrics=self.metrics)
        self.app = self._application()
        self.server: Optional[BoundedHTTPServer] = None
        self.port: Optional[int] = None

    def _application(self):
        """What this process serves over HTTP; None: nothing (a manager process without metrics)."""
        if self.role != "manager":
            return make_app(self.context)
        return make_metrics_app(self.context) if self.metrics.enabled else None

    def wake(self) -> None:
        """Ask the pool manager for a pass now: this process's own when it leads, else the leader's."""
        self._ask_manager(lambda manager: manager.wake())

    def refill(self) -> None:
        """Ask the pool manager to fill the pools now: this process's own when it leads (a fill,
        not a whole pass), else the leader's (a wake-up, which its pass answers with a fill)."""
        self._ask_manager(lambda manager: manager.refill())

    def destroy(self, vm) -> None:
        """Ask the pool manager to destroy ``vm`` (completed by a client's DELETE) now: this
        process's own when it leads, else the leader's (a wake-up: its pass finds the VM)."""
        self._ask_manager(lambda manager: manager.destroy_soon(vm))

    def _ask_manager(self, ask_local) -> None:
        if self.manager is not None and self.manager.acting():
            ask_local(self.manager)
        elif self.wake_sender is not None:
            self.wake_sender.send()

    async def start(self, host: str = "127.0.0.1", port: int = 4567) -> None:
        """StoreUnavailable, before anything listens, when the database cannot be upgraded or
        cannot take a write (read-only, full, unreachable); SchemaTooNew or UpgradeFailed
        (db/schema.py) when its schema is newer than the code or a migration failed."""
        upgraded = self.db.upgrade()
        if upgraded.backup:
            log.warning("database backed up before the schema upgrade to %s", upgraded.backup)
        if upgraded.before not in (None, upgraded.after):
            log.warning("database schema upgraded from %s to %s", upgraded.before, upgraded.after)
        heartbeat.beat(self.db)
        if self.app is not None:
            self._listen(host, port)
        if not self.db.is_sqlite:
            self._hear_other_processes(asyncio.get_running_loop())
        if self.manager is not None:
            await self._campaign()

    def _hear_other_processes(self, loop) -> None:
        """PostgreSQL: announce this process's changes, and listen for the others' (their changes
        make this one's cached answers stale) and, with a manager, for wake-ups."""
        assert self.change_sender is not None  # made for PostgreSQL, where this runs
        self.db.on_change = functools.partial(self.change_sender.send, loop)
        channels = [CHANGED] + ([WAKE] if self.manager is not None else [])

        def deliver(channel: str, payload: str) -> None:  # on the listening thread
            if channel == CHANGED and payload != self.origin:
                self.db.changed_elsewhere()
            elif channel == WAKE and self.manager is not None:
                loop.call_soon_threadsafe(self.manager.wake)

        self.listener = Listener(self.db.url, channels, deliver).start()

    async def _campaign(self) -> None:
        """Lead at once if nobody does (the usual single process); then keep campaigning, starting
        the manager at every term won and pausing it at every term lost."""
        manager, leadership = self.manager, self.leadership
        assert manager is not None and leadership is not None  # roles all and manager have both
        log.info("campaigning to run the pool manager as %s", leadership.holder)
        if await leadership.campaign_once():
            await manager.start()

        def term_changed(leading: bool) -> None:
            if leading:
                asyncio.ensure_future(self._begin_term(manager))
            else:
                manager.pause()
        leadership.on_change(term_changed)
        leadership.start()

    async def _begin_term(self, manager: Manager) -> None:
        try:
            await manager.start()
        except StoreUnavailable as error:  # the next term tries again
            log.warning("starting the pool manager failed: %s", error)
        except Exception:  # the next term, or the next pass, tries again
            log.exception("starting the pool manager failed")

    def _listen(self, host: str, port: int) -> None:
        # Bodies are limited by the application (413 JSON for any body over max_body_size).
        settings = self.config.settings
        server = self.server = BoundedHTTPServer(self.app, xheaders=settings.behind_proxy,
                                        max_connections=settings.max_connections,
                                        idle_connection_timeout=settings.http_idle_timeout,
                                        body_timeout=settings.http_body_timeout)
        try:
            sockets = bind_sockets(port, host)
        except OSError as error:  # in use, not ours to take, no such address: one line, no traceback
            raise ListenError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
        self.port = sockets[0].getsockname()[1]
        server.add_sockets(sockets)
        served = f"{self.metrics.endpoint} and /healthcheck only" if self.role == "manager" else "/api/v1"
        log.info("%s listening on http://%s:%d%s (database %s)", self.config.settings.site_name,
                 host, self.port, served, _safe_url(self.db.url))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.listener is not None:
            self.listener.stop()
        self.db.on_change = None
        if self.manager is not None and self.leadership is not None:
            await self.manager.stop()
            await self.leadership.stop()  # after the manager: a successor starts only once it is done
            self.lease_executor.shutdown(wait=False)
        if self.server is not None:
            await self.server.close_all_connections()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.db.dispose()


class CannotStart(Exception):
    """The service cannot start; the message says what and where (one line for the operator)."""


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    return make_url(url).render_as_string(hide_password=True)


async def serve(config, host: str, port: int, role: str = "all") -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    for warning in config.warnings:
        log.warning("config: %s", warning)
    for note in config.notes:
        log.info("config: %s", note)
    service = Service(config, role)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await service.start(host, port)
    except ListenError:
        await service.stop()
        raise
    except (StoreUnavailable, SchemaTooNew, UpgradeFailed) as error:
        raise CannotStart(f"{error} (database {_safe_url(service.db.url)})") from None
    await stopped.wait()
    log.info("stopping")
    await service.stop()
    log.info("stopped")
