"""Refilling has one owner: the ``Refiller`` holds the clone slots, their round-robin over the
pools, each pool's backoff after failed clones, and the lock under which slots are counted and
taken. The pass's replenish loop, the on-demand loop and the fills between passes all go
through it.

``task_limit`` bounds the clones in flight across all pools (a clone holds its slot from the row
being recorded until the provider's answer is). A pass fills the free slots (replenish.run); so
does, in the next IOLoop turn, a checkout that took VMs from a pool (``fill_soon``) and a clone
that ends while some pool still waits for a slot (``slot_freed``), so that a pool refills as fast
as the provider clones rather than ``task_limit`` clones per pass. A clone that ends while no pool
waited for a slot fills nothing: its pool was not short, or it is short for a reason the next
fill_soon or pass sees (a checkout, a VM retired by a pass). Every fill counts the free slots and
records the new rows under one lock: fills wait on the database, and two of them must never hand
out the same free slot (nor more than a pool's size of pending and ready VMs). Slots go
round-robin over the pools, carried on from where the last fill stopped, so the freed slots go to
each pool that wants VMs in turn; a pool waiting after failed clones gets none (its wait,
``backoffs``: manager/backoff.py, ended early when its provider answers again).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional

from tornado.ioloop import IOLoop

from vmpooler.db import stats
from vmpooler.db import vms as vm_store
from vmpooler.db.database import StoreUnavailable, utcnow
from vmpooler.manager import hostnames
from vmpooler.manager.backoff import Backoffs
from vmpooler.manager.clone import clone
from vmpooler.model import PENDING, PoolConfig

log = logging.getLogger("vmpooler.manager")
NAME_ATTEMPTS = 5
#: seconds: fills between passes start at most this often (a burst of checkouts shares them); a
#: pool is still refilled within this long of a checkout
FILL_INTERVAL = 0.02
Counts = Mapping[str, stats.PoolCounts]


class Refiller:
    """The one owner of refilling (see the module's docstring): one per Manager."""

    def __init__(self, manager: Any):
        """``manager``: the scheduler's Manager (its pools, settings, database, launch)."""
        self.manager = manager
        self.lock = asyncio.Lock()
        self._last: Optional[str] = None  # the pool that got the last slot handed out
        self._queued = False
        self._starved = False  # the last fill had pools wanting more VMs than there were free slots
        self._last_fill = 0.0  # when the last fill between passes started (monotonic)
        #: the pools waiting after failed clones, on the monotonic clock
        self.backoffs = Backoffs(manager.retry, manager.runner.breakers, manager.clock)

    # -- counting and taking slots, under the lock ----------------------------------------------
    @contextlib.asynccontextmanager
    async def counted(self, now: datetime.datetime) -> AsyncIterator[Counts]:
        """Hold the lock and read the pools' pending and ready VMs: whatever the caller takes of
        the free slots before leaving is counted by the next holder."""
        async with self.lock:
            yield await self.manager.db.run(stats.stock_counts, now)

    def clone_due(self, vm, now: datetime.datetime) -> bool:
        """Is ``vm`` (a row) a clone to (re)start now: pending, not cloned yet, and not waiting out
        a retry backoff (the retry policy's ``due``)? Such a clone holds a slot
        (``PoolCounts.clone_slots`` counts them)."""
        return vm.state == PENDING and vm.cloned_at is None and self.manager.retry.due(vm.next_attempt_at, now)

    def free_slots(self, counts: Counts) -> int:
        """Clone slots free under ``task_limit`` (negative when the limit was lowered)."""
        return self.manager.settings.task_limit - sum(c.clone_slots for c in counts.values())

    async def fill(self, counts: Counts, now: datetime.datetime) -> None:
        """Start as many clones as there are free slots, for the pools short of their size and
        not backing off after failed clones. Called inside ``counted``: the count and the new
        rows are one step, so two fills never hand out one slot."""
        wanted = {}
        for pool in self.manager.pools.values():
            missing = pool.size - counts.get(pool.name, stats.NO_VMS).stock
            if missing > 0 and not self.backoffs.waiting(pool.name):
                wanted[pool.name] = missing
        await self._start_clones(self.share(wanted, self.free_slots(counts)), now)

    def share(self, wanted: Dict[str, int], slots: int) -> List[str]:
        """Hand out ``slots`` clones round-robin over the pools in ``wanted`` ({pool: VMs it
        lacks}), starting after the pool that got the last slot: a list of pool names, one per
        clone. One big or failing pool cannot take every slot, and one freed slot at a time
        still goes to each pool in turn."""
        names = list(self.manager.pools)
        start = names.index(self._last) + 1 if self._last in names else 0
        wanted = {name: wanted[name] for name in names[start:] + names[:start] if wanted.get(name, 0) > 0}
        order = []
        while slots > 0 and wanted:
            for name in list(wanted):
                if slots <= 0:
                    break
                order.append(name)
                slots -= 1
                wanted[name] -= 1
                if wanted[name] == 0:
                    del wanted[name]
        if order:
            self._last = order[-1]
        self._starved = bool(wanted)  # what is left wanted once the slots ran out
        return order

    async def _start_clones(self, pool_names: List[str], now: datetime.datetime) -> None:
        """Record the new VMs in one transaction, then launch their clones. A name that is taken
        is skipped; the next fill makes up for it."""
        if not pool_names:
            return
        manager = self.manager
        names, wanted = set(), []
        for pool_name in pool_names:
            name = hostnames.generate(manager.settings.prefix)
            for _ in range(NAME_ATTEMPTS):
                if name not in names:
                    break
                name = hostnames.generate(manager.settings.prefix)
            names.add(name)
            wanted.append((manager.pools[pool_name], name))
        created = await manager.db.run(vm_store.new_vms, wanted, now, reserve_hours=manager.settings.data_ttl)
        if len(created) < len(wanted):
            log.info("%d generated hostnames were taken; the next pass makes up for them", len(wanted) - len(created))
        for vm in created:
            manager.launch(("vm", vm.name), clone(manager, manager.pools[vm.pool], vm))

    # -- fills between passes ------------------------------------------------------------------
    def fill_soon(self) -> None:
        """Fill the free slots in the next IOLoop turn: a checkout took VMs, or a clone ended with
        its VM retired. Whatever asks in one turn shares one fill: one count of the pools, one
        transaction of new rows; and during a burst of checkouts, whatever asks within
        FILL_INTERVAL of the last fill waits for the end of that interval, so that a burst costs
        a count of the pools per FILL_INTERVAL rather than per checkout."""
        if self._queued:
            return
        self._queued = True
        wait = self._last_fill + FILL_INTERVAL - time.monotonic()
        if wait > 0:
            IOLoop.current().call_later(wait, self._fill_now)
        else:
            IOLoop.current().add_callback(self._fill_now)

    async def _fill_now(self) -> None:
        self._queued = False
        self._last_fill = time.monotonic()
        if not self.manager.may_start_work():
            return  # stopped, paused, or no longer the leader: the next pass (or term) fills
        try:
            now = utcnow()
            async with self.counted(now) as counts:
                await self.fill(counts, now)
        except StoreUnavailable as error:
            self.manager.database_unavailable("refill", error)
        except Exception:  # a bug here must not go unnoticed, nor stop the passes
            log.exception("refill failed")

    # -- what clones tell -----------------------------------------------------------------------
    def clone_succeeded(self, pool: PoolConfig) -> None:
        """A clone of ``pool`` succeeded (with its DNS record, where one is kept): the pool's own
        wait and count of failures end."""
        self.backoffs.succeeded(pool.name)

    def hold_back(self, pool: PoolConfig, error: Exception) -> None:
        """A clone of ``pool`` failed (or its VM's DNS record could not be made): no new clone of
        it starts for a while (manager/backoff.py)."""
        self.backoffs.failed(pool, error)

    def slot_freed(self) -> None:
        """A clone ended: its slot goes to a pool that waits for one, if the last fill left any."""
        if self._starved:
            self.fill_soon()
