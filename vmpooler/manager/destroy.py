"""Destroying completed VMs, with retries and backoff up to ``destroy_attempts``."""
from __future__ import annotations

import logging
import time

from vmpooler.db import transitions, worklist
from vmpooler.db.database import utcnow
from vmpooler.providers.base import CircuitOpen, ProviderError, VMNotFound

log = logging.getLogger("vmpooler.manager")


def run(manager, now) -> None:
    for vm in worklist.to_destroy(manager.db, now):
        pool = manager.pools.get(vm.pool)
        if pool is not None:
            manager.launch(("vm", vm.name), _destroy(manager, pool, vm))


async def _destroy(manager, pool, vm) -> None:
    started = time.monotonic()
    try:
        await manager.runner.call(pool.provider, "destroy_vm", pool, vm.name)
    except CircuitOpen:
        return  # not an attempt: the provider is being given a rest
    except VMNotFound:
        pass  # already gone: as good as destroyed
    except ProviderError as error:
        now = utcnow()
        retry_at = None
        if error.transient:
            retry_at = manager.retry_time(now, vm.destroy_attempts + 1, manager.settings["destroy_attempts"])
        transitions.destroy_failed(manager.db, vm, str(error), now, retry_at)
        return
    if transitions.destroyed(manager.db, vm, utcnow()):
        manager.metrics.destroyed(pool.name, time.monotonic() - started)
