"""What the pool manager has to do: each function is one query over all pools, so a pass costs
a fixed number of queries whatever the number of pools or VMs."""
from __future__ import annotations

import datetime

from sqlalchemy import or_, select

from vmpooler.db import queries
from vmpooler.db.database import Database, utcnow
from vmpooler.db.models import tasks, vms
from vmpooler.model import COMPLETED, DESTROYED, GONE, LIVE_STATES, PENDING, QUEUED, READY, RUNNING


def pool_counts(db: Database) -> dict:
    """Per pool: pending, ready, cloning and clone_slots (see queries.pool_counts)."""
    with db.read() as conn:
        return queries.pool_counts(conn, utcnow())


def pending(db: Database) -> list:
    with db.read() as conn:
        return list(conn.execute(select(vms).where(vms.c.state == PENDING).order_by(vms.c.id)))


def ready_due(db: Database, checked_before: datetime.datetime, ready_before: datetime.datetime) -> list:
    """Ready VMs whose periodic check is due, or that may have outlived the shortest ready_ttl."""
    with db.read() as conn:
        return list(conn.execute(select(vms).where(
            vms.c.state == READY,
            or_(vms.c.checked_at.is_(None), vms.c.checked_at <= checked_before, vms.c.ready_at <= ready_before))))


def expired(db: Database, now: datetime.datetime) -> list:
    with db.read() as conn:
        return list(conn.execute(select(vms).where(vms.c.state == RUNNING, vms.c.expires_at.is_not(None),
                                                   vms.c.expires_at <= now)))


def to_destroy(db: Database, now: datetime.datetime) -> list:
    with db.read() as conn:
        return list(conn.execute(select(vms).where(
            vms.c.state == COMPLETED, or_(vms.c.next_attempt_at.is_(None), vms.c.next_attempt_at <= now))))


def excess(db: Database, pool: str, count: int) -> list:
    """The ``count`` VMs to remove from a shrunk pool: pending before ready, newest first."""
    with db.read() as conn:
        rows = list(conn.execute(select(vms).where(vms.c.pool == pool, vms.c.state.in_((PENDING, READY)),
                                                   vms.c.want_id.is_(None)).order_by(vms.c.id.desc())))
    rows.sort(key=lambda row: row.state != PENDING)
    return rows[:count]


def live_in_pool(db: Database, pool: str) -> list:
    with db.read() as conn:
        return list(conn.execute(select(vms).where(vms.c.pool == pool, vms.c.state.in_(LIVE_STATES + ("failed",)))))


def latest_dead(db: Database, pool: str, names) -> dict:
    """{name: newest destroyed/gone row} for names a provider still lists."""
    names = list(names)
    found = {}
    with db.read() as conn:
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            for row in conn.execute(select(vms).where(vms.c.pool == pool, vms.c.name.in_(chunk),
                                                      vms.c.state.in_((DESTROYED, GONE))).order_by(vms.c.id)):
                found[row.name] = row
    return found


def tasks_due(db: Database, now: datetime.datetime) -> list:
    """Queued tasks whose time has come, with their VM's name, pool and state."""
    with db.read() as conn:
        return list(conn.execute(
            select(tasks, vms.c.name.label("vm_name"), vms.c.pool.label("vm_pool"),
                   vms.c.state.label("vm_state"))
            .join(vms, vms.c.id == tasks.c.vm_id)
            .where(tasks.c.state == QUEUED, or_(tasks.c.next_attempt_at.is_(None), tasks.c.next_attempt_at <= now))
            .order_by(tasks.c.id)))

