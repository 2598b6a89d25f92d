"""Filling on-demand requests: VMs cloned for one client beside the pools' sizes.

Each pass, for every pending request, oldest first:
- all its VMs ready: they are handed over in one transaction (db.ondemand.hand_over);
- older than ``ondemand_request_ttl`` minutes: it fails and its VMs are destroyed;
- otherwise the VMs it still lacks are recorded and cloned, at most ``ondemand_clone_limit``
  on-demand clones in flight and ``task_limit`` clones of any kind (this loop runs before
  replenish, so a waiting client comes before a pool's refill). A VM lost before the hand-over
  (boot timeout, failed check) is replaced while the request has time left.
A clone that fails transiently is retried with backoff up to ``clone_attempts``; one that fails
for good (a permanent error, or its attempts used up) fails its request at once.

Everything is read from the database each pass, so a restart (even after kill -9) carries on
where the last process stopped: the hand-over is the only way a request's VMs leave it.
"""
from __future__ import annotations

import logging

from vmpooler.db import ondemand as requests_db
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.manager import hostnames
from vmpooler.manager.clone import clone
from vmpooler.model import AttemptKind
from vmpooler.providers.base import ProviderError

log = logging.getLogger("vmpooler.manager")


def ttl_failure(ttl) -> str:
    """The original's message for a request not filled in time."""
    return f"The request failed to provision instances within the configured ondemand_request_ttl '{ttl:g}'"


async def run(manager, work) -> None:
    settings, now = manager.settings, work.now
    db = manager.db
    for vm in await db.run(requests_db.strays):
        if await db.run(vm_store.complete, vm, "its on-demand request is finished", now):
            work.settled(vm)
    open_requests = await db.run(requests_db.open_requests)
    if not open_requests:
        return
    refiller = manager.refiller
    async with refiller.counted(now) as counts:  # counted and taken with no refill in between
        ondemand_in_flight = sum(1 for request in open_requests for vm in request.vms if refiller.clone_due(vm, now))
        slots = min(settings.ondemand_clone_limit - ondemand_in_flight, refiller.free_slots(counts))
        ttl = settings.ondemand_request_ttl
        for request in open_requests:
            if request.filled():
                await db.run(requests_db.hand_over, request, now, settings.vm_lifetime, settings.vm_lifetime_auth)
            elif (now - request.row.created_at).total_seconds() > ttl * 60 and work.clock_confirmed:
                if await db.run(requests_db.fail, request, ttl_failure(ttl), now):
                    log.info("on-demand request %s failed: not filled within %g minutes", request.row.request_id, ttl)
            else:
                _retry_due(manager, work, request)
                slots -= await _add_missing(manager, request, max(slots, 0), now)


def _retry_due(manager, work, request) -> None:
    for vm in request.vms:
        pool = manager.pools.get(vm.pool)
        if pool is not None and manager.refiller.clone_due(vm, work.now) and not manager.busy(vm.name):
            manager.launch(("vm", vm.name), clone(manager, pool, vm, failed=_clone_failed), work)


async def _add_missing(manager, request, slots: int, now) -> int:
    """Record and launch the clones ``request`` still lacks, at most ``slots``; how many."""
    wanted: list = []
    for want in request.wants:
        pool = manager.pools.get(want.pool)
        missing = want.count - len(request.vms_of(want, requests_db.WAITING))
        for _ in range(min(missing, slots - len(wanted)) if pool is not None else 0):
            wanted.append((pool, hostnames.generate(manager.settings.prefix), want.id))
    if not wanted:
        return 0
    created = await manager.db.run(requests_db.add_vms, request, wanted, now, manager.settings.data_ttl)
    for vm in created:
        manager.launch(("vm", vm.name), clone(manager, manager.pools[vm.pool], vm, failed=_clone_failed))
    return len(created)


async def _clone_failed(manager, pool, vm, error: ProviderError) -> None:
    """The retry policy's answer (manager/retry.py; an open breaker is no attempt), except that
    a clone given up fails its request with it."""
    now = utcnow()
    retry = manager.retry.after(AttemptKind.CLONE, error, vm.clone_attempts, pool.provider, now)
    if not retry.gives_up:
        await manager.db.run(vm_store.attempt_failed, vm, AttemptKind.CLONE, str(error), now, retry,
                             dead_letter_class=manager.dead_letter_class(error))
    elif await manager.db.run(requests_db.clone_given_up, vm, str(error), retry.attempts, now,
                              manager.dead_letter_class(error)):
        log.warning("[%s] %s: clone for an on-demand request given up: %s", pool.name, vm.name, error)

