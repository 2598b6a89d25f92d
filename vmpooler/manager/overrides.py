"""Applying run-time pool configuration (POST /config/..., /poolreset): each pass starts from
the effective pools (the file's configuration with the database's overrides), so a pool grows
or shrinks at once, and carries out the drains asked for, so a pool whose template or clone target
changed (or that was reset) is refilled with VMs made the new way."""
from __future__ import annotations

import logging

from vmpooler.db import overrides as override_store

log = logging.getLogger("vmpooler.manager")
WATCHED = ("size", "template", "clone_target")


async def run(manager, work) -> None:
    """First of a pass's loops, after the pass read its pending VMs (``work.pending``): a drain
    completes every ready and pending VM of its pool, so that pool's pending VMs are taken out of
    the pass (``work.settled``: no later loop probes or retries them); replenishment then refills
    the pools the new way. The drains are read before the pools: a change and the drain it asks
    for commit together, so pools read after a drain include its change. (Read the other way
    round, a change committed between the two reads was drained and refilled from the old pools.)"""
    drains = await manager.db.run(override_store.pending_drains)
    await refresh(manager)
    for name, request in drains.items():
        if name in manager.pools and await manager.db.run(override_store.drain, name, request, work.now) is not None:
            for vm in [vm for vm in work.pending if vm.pool == name]:
                work.settled(vm)


async def refresh(manager) -> None:
    """Replace ``manager.pools`` with the effective pools, logging what changed."""
    effective = await manager.db.run(override_store.effective_pools, manager.config.pools)
    pools = {pool.name: pool for pool in effective}
    for name, pool in pools.items():
        old = manager.pools.get(name)
        for key in WATCHED:
            was, now = (None, None) if old is None else (old.raw.get(key), pool.raw.get(key))
            if was != now:
                log.info("[%s] %s is now %s (was %s)", name, key, now, was)
    manager.pools = pools
