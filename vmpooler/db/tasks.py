"""State changes of queued tasks (snapshot, revert, disk), each one guarded transaction."""
from __future__ import annotations

from sqlalchemy import update

from vmpooler.db.database import Database
from vmpooler.db.models import tasks
from vmpooler.model import DONE, QUEUED, TASK_FAILED, TASK_RUNNING


def _move(db: Database, task_id: int, from_state: str, to_state: str, **values) -> bool:
    with db.write() as conn:
        return conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.state == from_state)
                            .values(state=to_state, **values)).rowcount == 1


def claim(db: Database, task_id: int) -> bool:
    return _move(db, task_id, QUEUED, TASK_RUNNING)


def finish(db: Database, task_id: int, now) -> bool:
    return _move(db, task_id, TASK_RUNNING, DONE, finished_at=now, last_error=None)


def fail(db: Database, task, error: str, now, retry_at=None) -> bool:
    """Back to the queue until ``retry_at``, or failed for good when there is none."""
    attempts = task.attempts + 1
    if retry_at is None:
        return _move(db, task.id, TASK_RUNNING, TASK_FAILED, attempts=attempts, last_error=error, finished_at=now)
    return _move(db, task.id, TASK_RUNNING, QUEUED, attempts=attempts, last_error=error, next_attempt_at=retry_at)


def requeue_interrupted(db: Database) -> int:
    """Tasks left running by a stopped process go back to the queue. A snapshot or revert is safe
    to repeat; a disk add interrupted after the provider made the disk may add a second one."""
    with db.write() as conn:
        return conn.execute(update(tasks).where(tasks.c.state == TASK_RUNNING).values(state=QUEUED)).rowcount
