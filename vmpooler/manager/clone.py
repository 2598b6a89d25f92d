"""Cloning one VM: the provider's clone, the first readiness probe, the row recorded cloned (and
ready when it answered at once), then boot detection in the same task. What the clone's end
frees goes back to the refiller (manager/refill.py): a success ends its pool's backoff, a slot
freed may start the next clone at once."""
from __future__ import annotations

import logging

from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.manager import checks
from vmpooler.model import AttemptKind
from vmpooler.providers.base import ProviderError

log = logging.getLogger("vmpooler.manager")


async def clone(manager, pool, vm, failed=None) -> None:
    """Clone ``vm`` and record it cloned (and ready when it answers at once); a failure goes to
    ``failed`` (on-demand VMs have their own handling), by default the pool's retry policy."""
    try:
        info = await manager.runner.call(pool.provider, lambda p: p.create_vm(pool, vm.name))
    except ProviderError as error:
        await (failed or pool_clone_failed)(manager, pool, vm, error)
        manager.refiller.fill_soon()  # a slot for another pool (this one backs off), or the given-up VM's replacement
        return
    manager.refiller.clone_succeeded(pool)
    try:  # the first readiness probe: a VM up at once is recorded cloned and ready together
        ready = await manager.runner.call(pool.provider, lambda p: p.is_ready(pool, vm.name))
    except ProviderError:
        ready = False
    now, ip = utcnow(), getattr(info, "ip", None)
    recorded = await manager.db.run(vm_store.cloned, vm, now, ip, ready=ready)
    manager.refiller.slot_freed()  # the next clone starts now, not at the next pass
    if not recorded:
        log.info("[%s] %s: clone finished after the VM was given up; it will be destroyed", pool.name, vm.name)
        return
    manager.metrics.cloned(vm, now, ready)
    if not ready:  # boot detection starts at once too, in this same task (one call at a time per VM)
        await checks.probe_boot(manager, pool, vm, ip)


async def pool_clone_failed(manager, pool, vm, error: ProviderError) -> None:
    """Record the failed clone of ``vm`` as the retry policy says, and hold the pool's new clones
    back (manager/refill.py)."""
    manager.refiller.hold_back(pool, error)
    now = utcnow()
    retry = manager.retry.after(AttemptKind.CLONE, error, vm.clone_attempts, pool.provider, now)
    await manager.db.run(vm_store.attempt_failed, vm, AttemptKind.CLONE, str(error), now, retry)
