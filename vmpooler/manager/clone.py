"""Cloning one VM: the provider's clone (adopting a VM an earlier attempt made), the first
readiness probe, the row recorded cloned (and ready when it answered at once), then boot
detection in the same task. What the clone's end tells goes to the refiller (manager/refill.py):
a success ends its pool's wait, a failure holds the pool back, a slot freed may start the next
clone at once."""
from __future__ import annotations

import logging

from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.manager import checks
from vmpooler.model import AttemptKind
from vmpooler.providers.base import ProviderError, VMExists

log = logging.getLogger("vmpooler.manager")


async def clone(manager, pool, vm, failed=None) -> None:
    """Clone ``vm`` and record it cloned (and ready when it answers at once); a failure goes to
    ``failed`` (on-demand VMs have their own handling), by default the pool's retry policy."""
    try:
        info = await _create(manager, pool, vm)
    except ProviderError as error:
        await (failed or pool_clone_failed)(manager, pool, vm, error)
        manager.refiller.fill_soon()  # a slot for another pool (this one backs off), or the given-up VM's replacement
        return
    if manager.records.plugin(pool) is None:  # else once its record is made (checks.probe_boot)
        manager.refiller.clone_succeeded(pool)
    try:  # the first readiness probe: a VM up at once is recorded cloned and ready together (unless
        # its DNS record must be made first: probe_boot makes it)
        ready = manager.records.plugin(pool) is None and bool(await checks.readiness(manager, pool, vm))
    except ProviderError:
        ready = False
    now, ip = utcnow(), getattr(info, "ip", None)
    recorded = await manager.record_clone((vm, now, ip, ready))  # with the clones that ended in this turn
    manager.refiller.slot_freed()  # the next clone starts now, not at the next pass
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


async def pool_clone_failed(manager, pool, vm, error: ProviderError) -> None:
    """Record the failed clone of ``vm`` as the retry policy says, and hold the pool's new clones
    back (manager/refill.py)."""
    now = utcnow()
    manager.refiller.hold_back(pool, error)
    retry = manager.retry.after(AttemptKind.CLONE, error, vm.clone_attempts, pool.provider, now)
    await manager.db.run(vm_store.attempt_failed, vm, AttemptKind.CLONE, str(error), now, retry,
                         dead_letter_class=manager.dead_letter_class(error))
