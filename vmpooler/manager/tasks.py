"""Carrying out queued snapshot, revert and disk tasks, with retries for transient failures."""
from __future__ import annotations

import logging

from vmpooler.db import tasks as task_store
from vmpooler.db import worklist
from vmpooler.db.database import utcnow
from vmpooler.model import LIVE_STATES, TaskKind
from vmpooler.providers.base import CircuitOpen, ProviderError

log = logging.getLogger("vmpooler.manager")

#: what each kind of task asks of the provider (a disk task's argument is its size in GB)
OPERATIONS = {
    TaskKind.SNAPSHOT: lambda provider, pool, name, arg: provider.create_snapshot(pool, name, arg),
    TaskKind.REVERT: lambda provider, pool, name, arg: provider.revert_snapshot(pool, name, arg),
    TaskKind.DISK: lambda provider, pool, name, arg: provider.create_disk(pool, name, int(arg)),
}


def run(manager, now) -> None:
    for task in worklist.tasks_due(manager.db, now):
        pool = manager.pools.get(task.vm_pool)
        if pool is None or task.vm_state not in LIVE_STATES:
            if task_store.claim(manager.db, task.id):
                task_store.fail(manager.db, task, f"the VM is {task.vm_state}", now)
            continue
        manager.launch(("vm", task.vm_name), _run(manager, pool, task))


async def _run(manager, pool, task) -> None:
    if not task_store.claim(manager.db, task.id):
        return
    try:
        await manager.runner.call(pool.provider, lambda p: OPERATIONS[task.kind](p, pool, task.vm_name, task.arg))
    except ProviderError as error:
        now = utcnow()
        retry_at = None
        if isinstance(error, CircuitOpen):
            retry_at = now  # not an attempt: back in the queue as it was
        elif error.transient:
            retry_at = manager.retry_time(now, task.attempts + 1, manager.settings["task_attempts"])
        task_store.fail(manager.db, task, str(error), now, retry_at)
        log.warning("[%s] %s: %s %s failed%s: %s", pool.name, task.vm_name, task.kind, task.arg,
                    "" if retry_at else " for good", error)
        return
    task_store.finish(manager.db, task.id, utcnow())
    log.info("[%s] %s: %s %s done", pool.name, task.vm_name, task.kind, task.arg)
