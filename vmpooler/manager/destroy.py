"""Destroying completed VMs (and removing their DNS records: manager/records.py), retried as the
retry policy says (manager/retry.py), up to ``destroy_attempts``, then ``failed``.

A pass destroys the completed VMs it reads; a VM a client gives back (DELETE) is destroyed
without waiting for one (``Returns``): a burst of returns would otherwise wake a pass every
WAKE_INTERVAL, each reading every pool's state on the IOLoop that answers the requests."""
from __future__ import annotations

import logging
import time
from typing import Any, List, NamedTuple

from tornado.ioloop import IOLoop

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


#: seconds: the VMs given back are destroyed in batches this often, so that the destroys of a burst
#: of returns end together and are recorded in one transaction (manager/coalesce.py)
RETURN_INTERVAL = 0.02


class Given(NamedTuple):
    """A VM given back (its completed row, as the DELETE committed it) and time.monotonic() then:
    work on it that ended later (a pass's destroy) makes the row stale (Manager.launch)."""
    vm: Any
    read_at: float


class Returns:
    """The VMs clients gave back, destroyed within RETURN_INTERVAL. Nothing is lost when they are
    not: a paused or stopped manager leaves them completed, and the next pass destroys them."""

    def __init__(self, manager):
        self.manager = manager
        self._waiting: List[Given] = []

    def add(self, vm) -> None:
        if not self._waiting:
            IOLoop.current().call_later(RETURN_INTERVAL, self._launch)
        self._waiting.append(Given(vm, time.monotonic()))

    def _launch(self) -> None:
        manager, returned = self.manager, self._waiting
        self._waiting = []
        if not manager.may_start_work():
            return  # the next pass destroys them
        for given in returned:
            pool = manager.pools.get(given.vm.pool)
            if pool is not None:
                manager.launch(("vm", given.vm.name), _destroy(manager, pool, given.vm), given)


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
    if await manager.record_destroy((vm, utcnow(), reason)):  # with the destroys that ended in this turn
        manager.metrics.destroyed(pool.name, time.monotonic() - started)
