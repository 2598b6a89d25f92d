"""Destroying completed VMs, retried as the retry policy says (manager/retry.py), up to
``destroy_attempts``, then ``failed``."""
from __future__ import annotations

import logging
import time

from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.model import AttemptKind
from vmpooler.providers.base import ProviderError, VMNotFound

log = logging.getLogger("vmpooler.manager")


async def run(manager, work) -> None:
    for vm in await manager.db.run(vm_store.to_destroy, work.now):
        pool = manager.pools.get(vm.pool)
        if pool is not None:
            manager.launch(("vm", vm.name), _destroy(manager, pool, vm), work)


async def _destroy(manager, pool, vm) -> None:
    started = time.monotonic()
    try:
        await manager.runner.call(pool.provider, lambda p: p.destroy_vm(pool, vm.name))
    except VMNotFound:
        pass  # already gone: as good as destroyed
    except ProviderError as error:
        now = utcnow()
        retry = manager.retry.after(AttemptKind.DESTROY, error, vm.destroy_attempts, pool.provider, now)
        await manager.db.run(vm_store.attempt_failed, vm, AttemptKind.DESTROY, str(error), now, retry)
        return
    if await manager.db.run(vm_store.destroyed, vm, utcnow()):
        manager.metrics.destroyed(pool.name, time.monotonic() - started)
