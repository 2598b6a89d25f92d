"""Clone slots: a slot that frees is used at once, not at the next pass.

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
each pool that wants VMs in turn."""
from __future__ import annotations

import asyncio
import logging

from tornado.ioloop import IOLoop

from vmpooler.db.database import StoreUnavailable

log = logging.getLogger("vmpooler.manager")


class Slots:
    def __init__(self, manager, refill):
        """``refill(manager)``: the coroutine that fills the free slots (replenish.refill)."""
        self.manager = manager
        self.lock = asyncio.Lock()
        self._refill = refill
        self._last = None  # the pool that got the last slot handed out
        self._queued = False
        self._starved = False  # the last fill had pools wanting more VMs than there were free slots

    def fill_soon(self) -> None:
        """Fill the free slots in the next IOLoop turn: a checkout took VMs, or a clone ended with
        its VM retired. Whatever asks in one turn shares one fill: one count of the pools, one
        transaction of new rows."""
        if self._queued:
            return
        self._queued = True
        IOLoop.current().add_callback(self._fill_now)

    def slot_freed(self) -> None:
        """A clone ended: its slot goes to a pool that waits for one, if the last fill left any."""
        if self._starved:
            self.fill_soon()

    async def _fill_now(self) -> None:
        self._queued = False
        if not self.manager.may_start_work():
            return  # stopped, paused, or no longer the leader: the next pass (or term) fills
        try:
            await self._refill(self.manager)
        except StoreUnavailable as error:
            self.manager.database_unavailable("refill", error)
        except Exception:  # a bug here must not go unnoticed, nor stop the passes
            log.exception("refill failed")

    def share(self, wanted: dict, slots: int) -> list:
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
