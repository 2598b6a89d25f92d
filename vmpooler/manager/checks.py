"""Watching VMs that exist: boot detection and the pending timeout, the periodic check of ready
VMs (ready_ttl, hostname, power, readiness) and the lifetime of running VMs."""
from __future__ import annotations

import asyncio
import datetime
import logging
import time

from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.dns.base import DnsError
from vmpooler.model import AttemptKind, DeadLetterQueue, why_not_ready
from vmpooler.providers.base import ProviderError

log = logging.getLogger("vmpooler.manager")

#: a ready VM's hostname is compared with its name only after this long (the guest may still be
#: renaming itself from the template's name), as the original does
HOSTNAME_GRACE = datetime.timedelta(seconds=60)


async def run(manager, work) -> None:
    await _pending(manager, work)
    await _ready(manager, work)
    if work.clock_confirmed:  # a lifetime is judged only on a wall clock that did not just step
        await _running(manager, work.now)


async def _pending(manager, work) -> None:
    now, timed_out = work.now, []
    pending = {vm.id for vm in work.pending}
    manager.not_ready = {vm_id: why for vm_id, why in manager.not_ready.items() if vm_id in pending}
    manager.timeout_warned &= pending
    for vm in list(work.pending):
        pool = manager.pools.get(vm.pool)
        if pool is None:
            continue
        _warn_before_timeout(manager, pool, vm, now)
        if now - vm.created_at > datetime.timedelta(minutes=pool.timeout) and work.clock_confirmed:
            timed_out.append((vm, f"still pending after {pool.timeout:g} minutes: {_pending_cause(manager, vm)}"))
            work.settled(vm)
        elif vm.cloned_at is not None and manager.retry.due(vm.next_attempt_at, now):  # a DNS record retry waits
            manager.launch(("vm", vm.name), probe_boot(manager, pool, vm), work)
    completed = await asyncio.gather(*(manager.db.run(vm_store.complete, vm, reason, now,
                                                      error=f"timed out waiting for the VM to boot: {reason}",
                                                      dead_letter=manager.dead_letter(DeadLetterQueue.PENDING,
                                                                                      "Timeout", reason))
                                       for vm, reason in timed_out))
    for (vm, _reason), done in zip(timed_out, completed):
        if done:
            manager.metrics.marked_failed(vm.pool)


def _pending_cause(manager, vm) -> str:
    """Why a VM timed out pending: what its last readiness probe said, else what is known."""
    if vm.cloned_at is None:
        return "its clone never finished"
    return manager.not_ready.pop(vm.id, None) or "it never answered its readiness probe"


def _warn_before_timeout(manager, pool, vm, now) -> None:
    """3.5's timeout_notification: one WARNING, ``timeout_notification`` minutes before a pending
    VM's timeout, that it is about to be given up, and why it is not ready yet."""
    if pool.timeout_notification is None or vm.id in manager.timeout_warned:
        return
    pending_for = now - vm.created_at
    if pending_for > datetime.timedelta(minutes=max(pool.timeout - pool.timeout_notification, 0)):
        manager.timeout_warned.add(vm.id)
        log.warning("[%s] %s: pending for %.1f minutes; it is given up at %g minutes unless it becomes ready "
                    "(%s)", pool.name, vm.name, pending_for.total_seconds() / 60, pool.timeout,
                    "its clone has not finished" if vm.cloned_at is None
                    else manager.not_ready.get(vm.id, "it has not answered its readiness probe yet"))


async def readiness(manager, pool, vm):
    """One readiness probe (``Provider.is_ready``); a VM not ready is remembered with the reason
    its provider gave, the cause reported if it times out pending."""
    answer = await manager.runner.call(pool.provider, lambda p: p.is_ready(pool, vm.name))
    if answer:
        manager.not_ready.pop(vm.id, None)
    else:
        manager.not_ready[vm.id] = why_not_ready(answer) or "its provider did not call it ready"
    return answer


async def probe_boot(manager, pool, vm, ip=None) -> None:
    """Probe a booting VM a few times within one pass interval (a short, growing pause between
    probes holds no thread), so that a VM is handed out soon after it boots; once ready, record
    the address the provider reports (or ``ip``, the one its clone reported). Run by a pass, and
    by the clone itself right after it (manager/replenish.py). A pool whose DNS setup keeps
    records gets the VM's record first, once its address is known (manager/records.py)."""
    pause, deadline = 0.05, time.monotonic() + manager.settings.check_loop_delay_min
    try:
        if manager.records.plugin(pool) is not None:
            ip = await _address(manager, pool, vm, ip)
            if not ip:
                manager.not_ready[vm.id] = "its address never came (its DNS record needs it)"
                return  # no address yet: the next pass asks again
            await manager.records.register(pool, vm.name, ip)
            manager.refiller.clone_succeeded(pool)
        while not await readiness(manager, pool, vm):
            if time.monotonic() + pause >= deadline:
                return
            await asyncio.sleep(pause)
            pause *= 2
        ip = await _address(manager, pool, vm, ip)
    except ProviderError as error:
        log.debug("[%s] %s: readiness probe failed: %s", pool.name, vm.name, error)
        manager.not_ready[vm.id] = f"its readiness probe failed: {error}"
        return
    except DnsError as error:
        await _record_failed(manager, pool, vm, error)
        return
    now = utcnow()
    if await manager.db.run(vm_store.became_ready, vm, now, ip=ip):
        manager.metrics.became_ready(vm, now)


async def _address(manager, pool, vm, ip):
    """The VM's address: known when the clone reported it; otherwise ask (vSphere learns it at boot)."""
    ip = ip or vm.ip
    if not ip:
        info = await manager.runner.call(pool.provider, lambda p: p.get_vm(pool, vm.name))
        ip = info.ip if info else None
    return ip


async def _record_failed(manager, pool, vm, error: DnsError) -> None:
    """The booting VM's DNS record could not be made: a failed clone attempt (as in 3.x), so the
    VM waits for a retry with backoff, or is given up (completed, then destroyed); the pool's
    new clones are held back as after a failed clone."""
    now = utcnow()
    manager.refiller.hold_back(pool, error)
    retry = manager.retry.after(AttemptKind.CLONE, error, vm.clone_attempts, pool.provider, now)
    await manager.db.run(vm_store.attempt_failed, vm, AttemptKind.CLONE, str(error), now, retry, booting=True,
                         dead_letter_class=manager.dead_letter_class(error))


async def _ready(manager, work) -> None:
    now = work.now
    if not manager.pools:
        return
    checktime = datetime.timedelta(minutes=manager.settings.vm_checktime)
    shortest_ttl = datetime.timedelta(minutes=min(p.ready_ttl for p in manager.pools.values()))
    stale = []
    for vm in await manager.db.run(vm_store.ready_due, now - checktime, now - shortest_ttl):
        pool = manager.pools.get(vm.pool)
        if pool is None:
            continue
        if now - vm.ready_at > datetime.timedelta(minutes=pool.ready_ttl) and work.clock_confirmed:
            stale.append((vm, f"ready for more than {pool.ready_ttl:g} minutes"))
        elif vm.checked_at is None or vm.checked_at <= now - checktime:
            manager.launch(("vm", vm.name), _check_ready(manager, pool, vm), work)
    await asyncio.gather(*(manager.db.run(vm_store.complete, vm, reason, now) for vm, reason in stale))


async def _check_ready(manager, pool, vm) -> None:
    """The periodic check of a ready VM; a VM that fails it is recycled, not handed out."""
    try:
        info = await manager.runner.call(pool.provider, lambda p: p.get_vm(pool, vm.name))
        if info is None:
            if await manager.db.run(vm_store.gone, vm, "vanished from the provider", utcnow()):
                await manager.records.forget(pool, vm.name)
            return
        problem = _problem(pool, vm, info)
        if problem is None and info.ip:  # the record follows a changed address (a no-op otherwise)
            await manager.records.register(pool, vm.name, info.ip)
        if problem is None:
            answer = await manager.runner.call(pool.provider, lambda p: p.is_ready(pool, vm.name))
            if not answer:
                problem = "failed its ready check" + (f": {why_not_ready(answer)}" if why_not_ready(answer) else "")
    except (ProviderError, DnsError) as error:
        log.info("[%s] %s: ready check could not run: %s", pool.name, vm.name, error)
        return
    now = utcnow()
    if problem is not None:
        await manager.db.run(vm_store.complete, vm, problem, now, error=problem,
                             dead_letter=manager.dead_letter(DeadLetterQueue.READY, "Unreachable", problem))
    else:
        await manager.db.run(vm_store.checked, vm, now, ip=info.ip)


def _problem(pool, vm, info):
    """Why a ready VM the provider reports must not be handed out, or None."""
    if not info.powered_on:
        return "powered off"
    if (pool.check_hostname_for_mismatch and info.hostname and info.hostname != vm.name
            and utcnow() - vm.ready_at > HOSTNAME_GRACE):
        return f"reports hostname {info.hostname!r}"
    return None


async def _running(manager, now) -> None:
    expired = await manager.db.run(vm_store.expired, now)
    await asyncio.gather(*(manager.db.run(vm_store.complete, vm, "reached the end of its lifetime", now)
                           for vm in expired))
