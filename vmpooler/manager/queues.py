"""The queues' upkeep, 3.8.1's queue-reliability features: the dead-letter queue kept within
``dlq_ttl`` and ``dlq_max_entries``, auto-purge of VMs stuck pending or ready (``purge_*``,
``max_*_age``), and the queue health logged every ``health_check_interval`` seconds.

Each runs from a pass at most once per its interval (on the monotonic clock), in the background,
and only when the pass's wall clock is confirmed (a clock step must not purge anything).
"""
from __future__ import annotations

import datetime
import logging
import time

from vmpooler.db import dead_letters, queue_health
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.model import COMPLETED, PENDING, READY, DeadLetterQueue

log = logging.getLogger("vmpooler.manager")
#: seconds between trims of the dead-letter queue
TRIM_INTERVAL = 60


async def run(manager, work) -> None:
    settings = manager.settings
    if not work.clock_confirmed:
        return
    if _due(manager, "dlq", TRIM_INTERVAL):
        manager.launch(("queues", "dlq"), manager.db.run(dead_letters.trim, utcnow(), settings.dlq_ttl,
                                                         settings.dlq_max_entries))
    if settings.purge_enabled and _due(manager, "purge", settings.purge_interval):
        manager.launch(("queues", "purge"), purge(manager))
    if settings.health_check_enabled and _due(manager, "health", settings.health_check_interval):
        manager.launch(("queues", "health"), log_health(manager))


def _due(manager, what: str, interval: float) -> bool:
    now = time.monotonic()
    if now < manager.queue_timers.get(what, 0.0):
        return False
    manager.queue_timers[what] = now + interval
    return True


async def purge(manager) -> int:
    """Retire VMs pending longer than ``max_pending_age`` or ready longer than ``max_ready_age``
    (each with its dead letter, queue ``pending`` or ``ready``, class ``Purge``), and report VMs
    waiting to be destroyed longer than ``max_completed_age``; with ``purge_dry_run`` only log.
    Returns how many VMs it retired (or would have)."""
    settings, now = manager.settings, utcnow()
    stale = []
    for vm in await manager.db.run(vm_store.live_in_states, (PENDING, READY, COMPLETED)):
        if vm.state == PENDING:
            age, limit = now - vm.created_at, settings.max_pending_age
        elif vm.state == READY:
            age, limit = now - (vm.ready_at or vm.created_at), settings.max_ready_age
        else:
            age, limit = now - (vm.completed_at or vm.state_changed_at), settings.max_completed_age
        if age > datetime.timedelta(seconds=limit):
            stale.append((vm, age.total_seconds(), limit))
    retired = 0
    for vm, age, limit in stale:
        what = f"stale {vm.state} VM (age: {age:.0f}s > max: {limit:g}s)"
        if vm.state == COMPLETED:
            log.warning("[purge] [%s] %s: %s; its destroy is still being retried", vm.pool, vm.name, what)
            continue
        retired += 1
        if settings.purge_dry_run:
            log.info("[purge][dry-run] [%s] %s: would retire the %s", vm.pool, vm.name, what)
            continue
        queue = DeadLetterQueue.PENDING if vm.state == PENDING else DeadLetterQueue.READY
        await manager.db.run(vm_store.complete, vm, f"purged: {what}", utcnow(), error=f"purged: {what}",
                             dead_letter=manager.dead_letter(queue, "Purge", f"Stale {vm.state} VM (age: {age:.0f}s "
                                                                             f"> max: {limit:g}s)"))
    if stale:
        log.info("[purge] %d VMs %s", retired, "would be retired (dry run)" if settings.purge_dry_run else "retired")
    return retired


async def log_health(manager) -> queue_health.QueueHealth:
    """Measure the queue health and log it (INFO when healthy, WARNING otherwise), as 3.8.1 does."""
    health = await manager.db.run(queue_health.measure, utcnow(), manager.settings.health_thresholds,
                                  list(manager.pools))
    totals = [sum(getattr(queues, field) for queues in health.pools.values())
              for field in ("pending", "ready", "completed")]
    line = (f"[health] Status: {str(health.status).upper()} | Queues: P={totals[0]} R={totals[1]} C={totals[2]} "
            f"| DLQ={health.dlq_total} | Stuck={health.stuck_total}")
    if health.reasons:
        line += " | " + "; ".join(health.reasons)
    log.log(logging.INFO if health.status == queue_health.Health.HEALTHY else logging.WARNING, line)
    return health
