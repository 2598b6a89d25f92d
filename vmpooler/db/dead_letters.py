"""The dead-letter queue: every VM that failed, with its pool, where it was (``queue_from``), the
error's class and message, its retry count, its on-demand request and when.

An entry is written by ``add`` in the transaction that retires the VM (db/vms.py), so a failure
is in the queue exactly when the VM's row says it failed. ``trim`` keeps the queue within
``dlq_ttl`` hours and ``dlq_max_entries`` rows; the manager calls it (manager/queues.py).
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import List, Optional

from sqlalchemy import delete, func, insert, select

from vmpooler.db.database import Database, writes
from vmpooler.db.models import dead_letters, ondemand_requests, ondemand_wants
from vmpooler.model import DeadLetter


@dataclasses.dataclass(frozen=True)
class Entry:
    """One entry, as GET /dlq and ``vmpooler dlq`` show it (3.8.1's fields)."""

    vm: str
    pool: str
    pool_alias: Optional[str]
    queue_from: str
    error_class: str
    error_message: str
    failed_at: datetime.datetime
    retry_count: int
    request_id: Optional[str]


_REQUEST_OF_WANT = (select(ondemand_requests.c.request_id, ondemand_wants.c.requested)
                    .join(ondemand_wants, ondemand_wants.c.request_ref == ondemand_requests.c.id))


def add(conn, vm, letter: DeadLetter, now: datetime.datetime) -> None:
    """Record ``vm``'s failure in the caller's transaction (the one that retires the VM)."""
    request_id = alias = None
    want_id = getattr(vm, "want_id", None)
    if want_id is not None:
        found = conn.execute(_REQUEST_OF_WANT.where(ondemand_wants.c.id == want_id)).first()
        if found is not None:
            request_id, alias = found.request_id, found.requested
    retries = letter.retry_count if letter.retry_count is not None else (getattr(vm, "clone_attempts", 0) or 0)
    conn.execute(insert(dead_letters).values(
        vm_id=vm.id, vm_name=vm.name, pool=vm.pool, pool_alias=alias, queue_from=str(letter.queue_from),
        error_class=letter.error_class[:100], error_message=letter.message, retry_count=retries,
        request_id=request_id, failed_at=now))


def entries(db: Database, pool: Optional[str] = None, queue_from: Optional[str] = None,
            limit: int = 100) -> List[Entry]:
    """The newest ``limit`` entries, newest first, of one pool and/or queue when given."""
    query = select(dead_letters).order_by(dead_letters.c.failed_at.desc(), dead_letters.c.id.desc()).limit(limit)
    if pool is not None:
        query = query.where(dead_letters.c.pool == pool)
    if queue_from is not None:
        query = query.where(dead_letters.c.queue_from == queue_from)
    with db.read() as conn:
        return [Entry(row.vm_name, row.pool, row.pool_alias, row.queue_from, row.error_class, row.error_message,
                      row.failed_at, row.retry_count, row.request_id) for row in conn.execute(query)]


def counts(db: Database) -> dict:
    """{(pool, queue_from): entries}: the metrics' gauge and the queue health's total."""
    query = (select(dead_letters.c.pool, dead_letters.c.queue_from, func.count())
             .group_by(dead_letters.c.pool, dead_letters.c.queue_from))
    with db.read() as conn:
        return {(pool, queue): count for pool, queue, count in conn.execute(query)}


@writes
def trim(db: Database, now: datetime.datetime, ttl_hours: float, max_entries: int) -> int:
    """Remove entries older than ``ttl_hours`` and the oldest beyond ``max_entries``; how many."""
    with db.write() as conn:
        removed = conn.execute(delete(dead_letters).where(
            dead_letters.c.failed_at < now - datetime.timedelta(hours=ttl_hours))).rowcount
        newest = (select(dead_letters.c.id).order_by(dead_letters.c.failed_at.desc(), dead_letters.c.id.desc())
                  .limit(max_entries))
        removed += conn.execute(delete(dead_letters).where(dead_letters.c.id.not_in(newest))).rowcount
    return removed
