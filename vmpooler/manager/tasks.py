"""Carrying out queued snapshot, revert and disk tasks, retried as the retry policy says
(manager/retry.py): a call refused by an open circuit breaker is not an attempt, so a task queued
during a provider outage is carried out after it."""
from __future__ import annotations

import logging

from vmpooler.db import tasks as task_store
from vmpooler.db.database import utcnow
from vmpooler.model import LIVE_STATES, AttemptKind, Retry, TaskKind
from vmpooler.providers.base import ProviderError

log = logging.getLogger("vmpooler.manager")

#: what each kind of task asks of the provider (a disk task's argument is its size in GB)
OPERATIONS = {
    TaskKind.SNAPSHOT: lambda provider, pool, name, arg: provider.create_snapshot(pool, name, arg),
    TaskKind.REVERT: lambda provider, pool, name, arg: provider.revert_snapshot(pool, name, arg),
    TaskKind.DISK: lambda provider, pool, name, arg: provider.create_disk(pool, name, int(arg)),
}


async def run(manager, work) -> None:
    now = work.now
    for task in await manager.db.run(task_store.due, now, manager.retry.horizon(now)):
        pool = manager.pools.get(task.vm_pool)
        if pool is None or task.vm_state not in LIVE_STATES:
            if await manager.db.run(task_store.claim, task.id):
                await manager.db.run(task_store.failed, task, f"the VM is {task.vm_state}", now,
                                     Retry(task.attempts, None))
            continue
        manager.launch(("vm", task.vm_name), _run(manager, pool, task), work)


async def _run(manager, pool, task) -> None:
    if not await manager.db.run(task_store.claim, task.id):
        return
    try:
        await manager.runner.call(pool.provider, lambda p: OPERATIONS[task.kind](p, pool, task.vm_name, task.arg))
    except ProviderError as error:
        now = utcnow()
        retry = manager.retry.after(AttemptKind.TASK, error, task.attempts, pool.provider, now)
        await manager.db.run(task_store.failed, task, str(error), now, retry)
        log.warning("[%s] %s: %s %s failed%s: %s", pool.name, task.vm_name, task.kind, task.arg,
                    " for good" if retry.gives_up else "", error)
        return
    await manager.db.run(task_store.finish, task.id, utcnow())
    log.info("[%s] %s: %s %s done", pool.name, task.vm_name, task.kind, task.arg)
