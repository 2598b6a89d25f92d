"""Keeping each pool at its size: clones new VMs (at most ``task_limit`` in flight across all
pools, shared round-robin so that one pool cannot starve the others, a freed slot used at once:
manager/slots.py), retries failed clones as the
retry policy says (manager/retry.py), and retires the excess of a pool that shrank."""
from __future__ import annotations

import asyncio
import logging

from vmpooler.db import stats
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.manager import backoff, checks, hostnames
from vmpooler.manager.retry import CLONE
from vmpooler.providers.base import ProviderError, VMExists

log = logging.getLogger("vmpooler.manager")
NAME_ATTEMPTS = 5


async def run(manager, work) -> None:
    now = work.now
    async with manager.slots.lock:
        counts = await manager.db.run(stats.stock_counts, now)
        _retry_due(manager, work)
        backoff.probe_waiting(manager)
        await _shrink(manager, counts, now)
        await _fill(manager, counts, now)


async def refill(manager) -> None:
    """Fill the free clone slots now, between passes (a clone ended: manager/slots.py)."""
    async with manager.slots.lock:
        now = utcnow()
        await _fill(manager, await manager.db.run(stats.stock_counts, now), now)


async def _fill(manager, counts: dict, now) -> None:
    """Start as many clones as ``task_limit`` has free slots, for the pools short of their size
    and not backing off after failed clones. Called under ``manager.slots.lock``: the count and
    the new rows are one step, so two fills never hand out one slot."""
    slots = manager.settings.task_limit - sum(c["clone_slots"] for c in counts.values())
    wanted = {}
    for pool in manager.pools.values():
        entry = counts.get(pool.name, {})
        missing = pool.size - _stock(entry)
        if missing > 0 and not manager.backoffs.waiting(pool.name):
            wanted[pool.name] = missing
    await _start_clones(manager, manager.slots.share(wanted, slots), now)


def _stock(entry: dict) -> int:
    """The pool's own VMs, pending or ready (VMs cloned for on-demand requests are not its)."""
    return entry.get("pending", 0) - entry.get("ondemand", 0) + entry.get("ready", 0)


def _retry_due(manager, work) -> None:
    now = work.now
    for vm in work.pending:
        pool = manager.pools.get(vm.pool)
        if pool is None or vm.cloned_at is not None or vm.want_id is not None or manager.busy(vm.name):
            continue
        if manager.retry.due(vm.next_attempt_at, now):
            manager.launch(("vm", vm.name), clone(manager, pool, vm), work)


async def _shrink(manager, counts, now) -> None:
    for pool in manager.pools.values():
        entry = counts.get(pool.name, {})
        extra = _stock(entry) - pool.size
        if extra > 0:
            reason = f"pool {pool.name} is over its size of {pool.size}"
            excess = await manager.db.run(vm_store.excess, pool.name, extra)
            # submitted together, so that they share one batch of the group commit
            await asyncio.gather(*(manager.db.run(vm_store.complete, vm, reason, now) for vm in excess))


async def _start_clones(manager, pool_names: list, now) -> None:
    """Record the new VMs in one transaction, then launch their clones. A name that is taken
    is skipped; the next pass makes up for it."""
    if not pool_names:
        return
    names = set()
    wanted = []
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


async def clone(manager, pool, vm, failed=None) -> None:
    """Clone ``vm`` and record it cloned (and ready when it answers at once); a failure goes to
    ``failed`` (on-demand VMs have their own handling), by default the pool's retry policy."""
    try:
        info = await _create(manager, pool, vm)
    except ProviderError as error:
        await (failed or _clone_failed)(manager, pool, vm, error)
        manager.slots.fill_soon()  # a slot for another pool (this one backs off), or the given-up VM's replacement
        return
    if manager.records.plugin(pool) is None:  # else once its record is made (checks.probe_boot)
        manager.pool_recovered(pool)
    try:  # the first readiness probe: a VM up at once is recorded cloned and ready together (unless
        # its DNS record must be made first: probe_boot makes it)
        ready = manager.records.plugin(pool) is None and await manager.runner.call(
            pool.provider, lambda p: p.is_ready(pool, vm.name))
    except ProviderError:
        ready = False
    now, ip = utcnow(), getattr(info, "ip", None)
    recorded = await manager.db.run(vm_store.cloned, vm, now, ip, ready=ready)
    manager.slots.slot_freed()  # the next clone starts now, not at the next pass
    if not recorded:
        log.info("[%s] %s: clone finished after the VM was given up; it will be destroyed", pool.name, vm.name)
        return
    manager.metrics.cloned(vm, now, ready)
    if not ready:  # boot detection starts at once too, in this same task (one call at a time per VM)
        await checks.probe_boot(manager, pool, vm, ip)


async def _create(manager, pool, vm):
    """The provider's clone of ``vm``. A VM of its name that exists already is adopted when it is
    the clone asked for: the name is ours (generated, and recorded live before any provider was
    asked), so a VM of that name and the pool's template was made by an earlier attempt of this
    clone whose answer was lost (the database could not record it). Anything else fails as
    ``VMExists``."""
    try:
        return await manager.runner.call(pool.provider, lambda p: p.create_vm(pool, vm.name))
    except VMExists:
        info = await manager.runner.call(pool.provider, lambda p: p.get_vm(pool, vm.name))
        if info is None or info.template != pool.template:
            raise
    log.info("[%s] %s: exists already, made by an earlier attempt of this clone: adopted", pool.name, vm.name)
    return info


async def _clone_failed(manager, pool, vm, error: ProviderError) -> None:
    """Record the failed clone of ``vm`` and hold the pool's new clones back (Manager.hold_pool)."""
    now = utcnow()
    manager.hold_pool(pool, error)
    retry = manager.retry.after(CLONE, error, vm.clone_attempts, pool.provider, now)
    await manager.db.run(vm_store.attempt_failed, vm, CLONE, str(error), now, retry.attempts, retry.at)
