"""Keeping each pool at its size, once a pass: restarts the clones whose retry is due (the retry
policy: manager/retry.py), probes the providers that pools wait for (manager/backoff.py), retires
the excess of a pool that shrank, and fills the free clone slots through the refiller
(manager/refill.py), which owns the slots, their round-robin and each pool's wait, and also fills
between passes."""
from __future__ import annotations

import asyncio
import logging

from vmpooler.db import stats
from vmpooler.db import vms as vm_store
from vmpooler.manager import backoff
from vmpooler.manager.clone import clone
from vmpooler.manager.refill import Counts

log = logging.getLogger("vmpooler.manager")


async def run(manager, work) -> None:
    now = work.now
    async with manager.refiller.counted(now) as counts:
        _retry_due(manager, work)
        backoff.probe_waiting(manager)
        await _shrink(manager, counts, now)
        await manager.refiller.fill(counts, now)


def _retry_due(manager, work) -> None:
    for vm in work.pending:
        pool = manager.pools.get(vm.pool)
        if pool is None or vm.want_id is not None or manager.busy(vm.name) or \
                not manager.refiller.clone_due(vm, work.now):
            continue
        manager.launch(("vm", vm.name), clone(manager, pool, vm), work)


async def _shrink(manager, counts: Counts, now) -> None:
    for pool in manager.pools.values():
        extra = counts.get(pool.name, stats.NO_VMS).stock - pool.size
        if extra > 0:
            reason = f"pool {pool.name} is over its size of {pool.size}"
            excess = await manager.db.run(vm_store.excess, pool.name, extra)
            # submitted together, so that they share one batch of the group commit
            await asyncio.gather(*(manager.db.run(vm_store.complete, vm, reason, now) for vm in excess))
