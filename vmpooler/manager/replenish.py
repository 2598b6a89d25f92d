"""Keeping each pool at its size: clones new VMs (at most ``task_limit`` in flight across all
pools, shared round-robin so that one pool cannot starve the others), retries failed clones with
backoff, and retires the excess of a pool that shrank."""
from __future__ import annotations

import datetime
import logging

from vmpooler.db import transitions, worklist
from vmpooler.db.database import utcnow
from vmpooler.manager import hostnames
from vmpooler.providers.base import CircuitOpen, ProviderError

log = logging.getLogger("vmpooler.manager")
NAME_ATTEMPTS = 5


def run(manager, now) -> None:
    counts = worklist.pool_counts(manager.db)
    _retry_due(manager, now)
    _shrink(manager, counts, now)
    slots = manager.settings["task_limit"] - sum(c["clone_slots"] for c in counts.values())
    wanted = {}
    for pool in manager.pools.values():
        entry = counts.get(pool.name, {})
        missing = pool.size - entry.get("pending", 0) - entry.get("ready", 0)
        if missing > 0 and now >= manager.pool_retry_at.get(pool.name, now):
            wanted[pool.name] = missing
    _start_clones(manager, _share(wanted, slots), now)


def _share(wanted: dict, slots: int) -> list:
    """Hand out ``slots`` clones round-robin over the pools that want some, so one big or
    failing pool cannot take every slot: a list of pool names, one per clone."""
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
    return order


def _retry_due(manager, now) -> None:
    for vm in worklist.pending(manager.db):
        pool = manager.pools.get(vm.pool)
        if pool is None or vm.cloned_at is not None or manager.busy(vm.name):
            continue
        if vm.next_attempt_at is None or vm.next_attempt_at <= now:
            manager.launch(("vm", vm.name), _clone(manager, pool, vm))


def _shrink(manager, counts, now) -> None:
    for pool in manager.pools.values():
        entry = counts.get(pool.name, {})
        extra = entry.get("pending", 0) + entry.get("ready", 0) - pool.size
        if extra > 0:
            for vm in worklist.excess(manager.db, pool.name, extra):
                transitions.complete(manager.db, vm, f"pool {pool.name} is over its size of {pool.size}", now)


def _start_clones(manager, pool_names: list, now) -> None:
    """Record the new VMs in one transaction, then launch their clones. A name that is taken
    is skipped; the next pass makes up for it."""
    if not pool_names:
        return
    names = set()
    wanted = []
    for pool_name in pool_names:
        name = hostnames.generate(manager.settings["prefix"])
        for _ in range(NAME_ATTEMPTS):
            if name not in names:
                break
            name = hostnames.generate(manager.settings["prefix"])
        names.add(name)
        wanted.append((manager.pools[pool_name], name))
    created = transitions.new_vms(manager.db, wanted, now, reserve_hours=manager.settings["data_ttl"])
    if len(created) < len(wanted):
        log.info("%d generated hostnames were taken; the next pass makes up for them", len(wanted) - len(created))
    for vm in created:
        manager.launch(("vm", vm.name), _clone(manager, manager.pools[vm.pool], vm))


async def _clone(manager, pool, vm) -> None:
    try:
        info = await manager.runner.call(pool.provider, "create_vm", pool, vm.name)
    except ProviderError as error:
        _clone_failed(manager, pool, vm, error)
        return
    manager.pool_failures.pop(pool.name, None)
    manager.pool_retry_at.pop(pool.name, None)
    try:  # the first readiness probe: a VM up at once is recorded cloned and ready together
        ready = await manager.runner.call(pool.provider, "is_ready", pool, vm.name)
    except ProviderError:
        ready = False
    now = utcnow()
    if transitions.cloned(manager.db, vm, now, getattr(info, "ip", None), ready=ready):
        manager.metrics.cloned(vm, now, ready)
        if not ready:
            manager.wake()  # probe the new VM at the next pass, soon
    else:
        log.info("[%s] %s: clone finished after the VM was given up; it will be destroyed", pool.name, vm.name)


def _clone_failed(manager, pool, vm, error: ProviderError) -> None:
    now = utcnow()
    failures = manager.pool_failures.get(pool.name, 0) + 1
    manager.pool_failures[pool.name] = failures
    manager.pool_retry_at[pool.name] = now + datetime.timedelta(seconds=manager.backoff(failures))
    if isinstance(error, CircuitOpen):
        return  # not an attempt of this VM: the provider is being given a rest
    retry_at = None
    if error.transient:
        retry_at = manager.retry_time(now, vm.clone_attempts + 1, manager.settings["clone_attempts"])
    transitions.clone_failed(manager.db, vm, str(error), now, retry_at)
