"""Queued work on a VM (snapshot, revert, disk) that the manager carries out: queueing, each
state change of a task (one guarded transaction), and the reads of the queue. Every function
takes the ``Database``."""
from __future__ import annotations

import datetime
from typing import Optional

from sqlalchemy import bindparam, insert, or_, select, update

from vmpooler.db.database import Database, writes
from vmpooler.db.models import tasks, vms
from vmpooler.db.prepared import PlainRead, PlainWrite
from vmpooler.model import DONE, QUEUED, TASK_RUNNING, AttemptKind, Retry, TaskKind

# Built once (see db/vms.py), run as every statement is (db/prepared.py): the SET clause comes
# from the parameters given to execute().
_GUARDED_UPDATE = PlainWrite(update(tasks).where(tasks.c.id == bindparam("guard_id"),
                                                 tasks.c.state == bindparam("guard_state")))
_INSERT = PlainRead(insert(tasks).returning(tasks.c.id))  # the new id, in the same statement
_REQUEUE = PlainWrite(update(tasks).where(tasks.c.state == TASK_RUNNING).values(state=QUEUED))
_DUE = PlainRead(select(tasks, vms.c.name.label("vm_name"), vms.c.pool.label("vm_pool"), vms.c.state.label("vm_state"))
                 .join(vms, vms.c.id == tasks.c.vm_id)
                 .where(tasks.c.state == QUEUED,
                        or_(tasks.c.next_attempt_at.is_(None), tasks.c.next_attempt_at <= bindparam("now"),
                            tasks.c.next_attempt_at > bindparam("horizon")))
                 .order_by(tasks.c.id))
_SNAPSHOT_TAKEN = PlainRead(select(tasks.c.id).where(tasks.c.vm_id == bindparam("vm_id"),
                                                     tasks.c.kind == TaskKind.SNAPSHOT,
                                                     tasks.c.arg == bindparam("name"), tasks.c.state == DONE).limit(1))


@writes
def queue(db: Database, vm, kind: str, arg: str, now) -> int:
    """Queue a snapshot, revert or disk task for the manager. Returns the task's id."""
    with db.write() as conn:
        return _INSERT.first(conn, {"vm_id": vm.id, "kind": kind, "arg": arg, "state": QUEUED, "attempts": 0,
                                    "created_at": now}).id


def _move(db: Database, task_id: int, from_state: str, to_state: str, **values) -> bool:
    with db.write() as conn:
        return _GUARDED_UPDATE.execute(conn, {"guard_id": task_id, "guard_state": from_state, "state": to_state,
                                              **values}) == 1


@writes
def claim(db: Database, task_id: int) -> bool:
    return _move(db, task_id, QUEUED, TASK_RUNNING)


@writes
def finish(db: Database, task_id: int, now) -> bool:
    return _move(db, task_id, TASK_RUNNING, DONE, finished_at=now, last_error=None)


@writes
def failed(db: Database, task, error: str, now, retry: Retry) -> bool:
    """A run of the task did not succeed: ``retry`` holds its new count of attempts (unchanged
    when the provider's circuit breaker refused the call: that was no attempt). Back to the queue
    until ``retry.at``, or failed for good when there is none."""
    kind = AttemptKind.TASK
    if retry.at is None:
        return _move(db, task.id, kind.works_on, kind.gives_up_to, last_error=error, finished_at=now,
                     **{kind.column: retry.attempts})
    return _move(db, task.id, kind.works_on, QUEUED, last_error=error, next_attempt_at=retry.at,
                 **{kind.column: retry.attempts})


@writes
def requeue_interrupted(db: Database) -> int:
    """Tasks left running by a stopped process go back to the queue. A snapshot or revert is safe
    to repeat; a disk add interrupted after the provider made the disk may add a second one."""
    with db.write() as conn:
        return _REQUEUE.execute(conn, {})


def due(db: Database, now: datetime.datetime, horizon: Optional[datetime.datetime] = None) -> list:
    """Queued tasks whose time has come (or whose retry is set beyond ``horizon``), with their VM's
    name, pool and state."""
    with db.read() as conn:
        return _DUE.all(conn, {"now": now, "horizon": horizon or datetime.datetime.max})


def has_snapshot(db: Database, vm_id: int, name: str) -> bool:
    """Whether a snapshot of that name was taken (its task finished) on the VM."""
    with db.read() as conn:
        return _SNAPSHOT_TAKEN.first(conn, {"vm_id": vm_id, "name": name}) is not None
