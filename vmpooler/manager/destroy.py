"""Destroying completed VMs (and removing their DNS records: manager/records.py), retried as the
retry policy says (manager/retry.py), up to ``destroy_attempts``, then ``failed``."""
from __future__ import annotations

import logging
import time

from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.dns.base import DnsError
from vmpooler.model import AttemptKind
from vmpooler.providers.base import ProviderError, VMNotFound

log = logging.getLogger("vmpooler.manager")


async def run(manager, work) -> None:
    for vm in await manager.db.run(vm_store.to_destroy, work.now, manager.retry.horizon(work.now)):
        pool = manager.pools.get(vm.pool)
        if pool is not None:
            manager.launch(("vm", vm.name), _destroy(manager, pool, vm), work)


async def _destroy(manager, pool, vm) -> None:
    started = time.monotonic()
    try:
        try:
            await manager.runner.call(pool.provider, lambda p: p.destroy_vm(pool, vm.name))
        except VMNotFound:
            pass  # already gone: as good as destroyed
        await manager.records.remove(pool, vm.name)  # once the VM is gone, as 3.x does
    except (ProviderError, DnsError) as error:
        now = utcnow()
        retry = manager.retry.after(AttemptKind.DESTROY, error, vm.destroy_attempts, pool.provider, now)
        if not (isinstance(error, DnsError) and retry.gives_up):
            await manager.db.run(vm_store.attempt_failed, vm, AttemptKind.DESTROY, str(error), now, retry)
            return
        # the VM is gone; only its record stays (an operator must remove it): the VM is destroyed
        log.error("[%s] %s: destroyed, but its DNS record could not be removed: %s", pool.name, vm.name, error)
        reason = f"destroyed; its DNS record could not be removed: {error}"
    else:
        reason = "destroyed"
    if await manager.db.run(vm_store.destroyed, vm, utcnow(), reason):
        manager.metrics.destroyed(pool.name, time.monotonic() - started)
