"""Who runs the pool manager when several processes share one database.

Each process that may manage campaigns for the ``manager`` lease (db/leases.py): the holder renews
it every ``lease_seconds / 4``; when the holder dies, hangs or loses the database, its lease expires
and another process takes it within about ``lease_seconds``. Fencing is local and immediate:
``is_leader`` is true only until ``lease_seconds - margin`` after the *start* of the last successful
renewal, measured on this process's monotonic clock, so a process that was paused (SIGSTOP, a long
GC, a hung database call) knows it is no longer leader the moment it runs again, before another
process can have taken over. The guarded transitions refuse whatever a stale actor still writes.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Callable, Optional

from vmpooler.db import leases
from vmpooler.db.database import StoreUnavailable

log = logging.getLogger("vmpooler.manager")

LEASE_NAME = "manager"


def process_identity() -> str:
    """host:pid:random, unique across restarts and machines; shown in /status."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leadership:
    def __init__(self, db, lease_seconds: float = 5.0, holder: Optional[str] = None,
                 clock: Callable[[], float] = time.monotonic, executor=None):
        self.db = db
        self.lease_seconds = lease_seconds
        self.renew_every = lease_seconds / 4
        #: a renewal must finish this long before the lease's end to count (database latency, clock drift)
        self.margin = lease_seconds / 5
        self.holder = holder or process_identity()
        self.clock = clock
        self.executor = executor
        self.epoch: Optional[int] = None
        self.valid_until = 0.0
        self._announced = False  # what the listeners were last told
        self._task: Optional[asyncio.Task] = None
        self._listeners: list = []

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None and self.clock() < self.valid_until

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """``listener(True)`` when this process becomes leader, ``listener(False)`` when it stops."""
        self._listeners.append(listener)

    async def campaign_once(self) -> bool:
        """Take or renew the lease once; returns whether this process leads now."""
        if self._announced and not self.is_leader:
            # the lease ran out before this renewal: it may be another's now, so this process
            # stopped managing at its end, whatever this renewal brings (a new term reconciles)
            log.warning("leadership: %s's lease lapsed %.1f s before it could renew it (the process was paused "
                        "or the database too slow): it stopped running the pool manager then",
                        self.holder, self.clock() - self.valid_until)
            self._announce(False)
        started = self.clock()
        try:
            epoch = await asyncio.get_running_loop().run_in_executor(
                self.executor, leases.hold, self.db, LEASE_NAME, self.holder, self.lease_seconds)
        except StoreUnavailable as error:
            log.warning("leadership: the database is unavailable: %s", error)
            epoch = None
        if epoch is not None and self.clock() < started + self.lease_seconds - self.margin:
            self.epoch, self.valid_until = epoch, started + self.lease_seconds - self.margin
        else:
            self.epoch = None
        self._announce(self.is_leader)
        return self.is_leader

    def _announce(self, now_leader: bool, stopping: bool = False) -> None:
        """Tell the listeners, and the log: taking the lease, or giving it up when stopping, is
        normal life (INFO); losing it while running is worth an operator's look (WARNING)."""
        if now_leader == self._announced:
            return
        self._announced = now_leader
        level = logging.INFO if now_leader or stopping else logging.WARNING
        log.log(level, "leadership: %s %s the pool manager (epoch %s)", self.holder,
                "now runs" if now_leader else "no longer runs", self.epoch)
        for listener in self._listeners:
            try:
                listener(now_leader)
            except Exception:  # one listener's bug must not keep the others from hearing
                log.exception("leadership listener failed")

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._campaign())

    async def _campaign(self) -> None:
        while True:
            await self.campaign_once()
            if not self.is_leader and self.epoch is None:
                await asyncio.sleep(self.renew_every)
                continue
            # renew early enough that a slow renewal still lands inside the lease
            await asyncio.sleep(max(0.0, min(self.renew_every, self.valid_until - self.clock() - self.margin)))

    async def stop(self) -> None:
        """Stop campaigning and give the lease up, so another process takes over at once."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.epoch is not None:
            epoch, self.epoch = self.epoch, None
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self.executor, leases.release, self.db, LEASE_NAME, self.holder, epoch)
            except StoreUnavailable:
                pass  # it expires by itself
            self._announce(False, stopping=True)

    def describe(self) -> dict:
        """For /status and the health check."""
        return describe_lease(self.db, self.holder, self.is_leader)


def describe_lease(db, this_process: Optional[str] = None, leading: bool = False) -> dict:
    """Who holds the manager's lease, as /status and the health check show it; a process that
    does not manage (``--role api``) has no ``this_process``."""
    lease = leases.current(db, LEASE_NAME)
    return {"this_process": this_process, "leader": leading,
            "current_leader": lease.holder if lease else None, "epoch": lease.epoch if lease else None}
