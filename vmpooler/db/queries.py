"""Read models for the API: a VM's details, pool counts, duration and tag aggregates, tokens.

Everything here only reads. Aggregates are computed by the database (GROUP BY), so the number
of queries does not grow with the number of pools and no raw sample rows reach Python. Only
portable SQL (SQLite now, PostgreSQL later).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

from sqlalchemy import and_, bindparam, case, func, select

from vmpooler.db.models import duration_days, pools, tasks, tokens, vm_tags, vms
from vmpooler.model import DONE, LIVE_STATES, PENDING, READY, RUNNING

DURATION_KINDS = ("boot", "clone")


# --- VMs ------------------------------------------------------------------------------------
# Hot reads are built once: building a statement costs more than SQLite running it.
_LATEST_VM = select(vms).where(vms.c.name == bindparam("name")).order_by(vms.c.id.desc()).limit(1)
_VM_TAGS = select(vm_tags.c.name, vm_tags.c.value).where(vm_tags.c.vm_id == bindparam("vm_id")).order_by(vm_tags.c.id)
_VM_DONE_TASKS = (select(tasks.c.kind, tasks.c.arg)
                  .where(tasks.c.vm_id == bindparam("vm_id"), tasks.c.state == DONE,
                         tasks.c.kind.in_(("snapshot", "disk"))).order_by(tasks.c.id))


def latest_vm(conn, name: str):
    """The newest row of the VM called ``name`` (names are reused once a VM is gone)."""
    return conn.execute(_LATEST_VM, {"name": name}).first()


@dataclasses.dataclass
class VMExtras:
    tags: dict
    snapshots: list
    disks: list


def vm_extras(conn, vm_id: int) -> VMExtras:
    """Tags, finished snapshots and finished disk additions of one VM, oldest first."""
    tags = {row.name: row.value for row in conn.execute(_VM_TAGS, {"vm_id": vm_id})}
    done = conn.execute(_VM_DONE_TASKS, {"vm_id": vm_id})
    snapshots, disks = [], []
    for row in done:
        (snapshots if row.kind == "snapshot" else disks).append(row.arg)
    return VMExtras(tags, snapshots, disks)


def has_snapshot(conn, vm_id: int, name: str) -> bool:
    """Whether a snapshot of that name was taken (its task finished) on the VM."""
    return conn.execute(select(tasks.c.id).where(tasks.c.vm_id == vm_id, tasks.c.kind == "snapshot",
                                                 tasks.c.arg == name, tasks.c.state == DONE).limit(1)).first() is not None


# --- pools ----------------------------------------------------------------------------------
_COUNTED = ("pending", "cloning", "booting", "ready", "running", "completed", "clone_slots", "ondemand")


_CLONING = and_(vms.c.state == PENDING, vms.c.cloned_at.is_(None))
_WAITING = and_(_CLONING, vms.c.next_attempt_at.is_not(None), vms.c.next_attempt_at > bindparam("now"))
_POOL_COUNTS = (select(vms.c.pool, vms.c.state, func.count(), func.sum(case((_CLONING, 1), else_=0)),
                       func.sum(case((_WAITING, 1), else_=0)),
                       func.sum(case((vms.c.want_id.is_not(None), 1), else_=0)))
                .where(vms.c.state.in_(LIVE_STATES)).group_by(vms.c.state, vms.c.pool))


def pool_counts(conn, now) -> dict:
    """{pool: {pending, cloning, booting, ready, running, completed, clone_slots, ondemand}} over
    live VMs, in ONE grouped query (an index-only scan of ix_vms_state_pool_counts). cloning =
    pending without cloned_at; booting = the other pending ones; clone_slots = the cloning ones not
    waiting out a retry backoff (clones running now or due to (re)start), on-demand ones included.
    ondemand = VMs cloned for an on-demand request and not yet handed over (pending or ready):
    they count as pending, never as ready (no checkout can take them), and a pool's size is
    kept by its other VMs (``pending - ondemand + ready``)."""
    counts = {}
    for pool, state, count, cloning_count, waiting_count, ondemand_count in conn.execute(_POOL_COUNTS, {"now": now}):
        entry = counts.setdefault(pool, dict.fromkeys(_COUNTED, 0))
        ondemand_count = int(ondemand_count or 0)
        if state == READY:
            entry["ready"] = count - ondemand_count
            entry["pending"] += ondemand_count
            entry["ondemand"] += ondemand_count
        elif state == PENDING:
            entry["pending"] += count
            entry["ondemand"] += ondemand_count
            entry["cloning"] = int(cloning_count or 0)
            entry["booting"] = count - entry["cloning"]
            entry["clone_slots"] = entry["cloning"] - int(waiting_count or 0)
        else:
            entry[state] = count
    return counts


def empty_counts() -> dict:
    return dict.fromkeys(_COUNTED, 0)


_LAST_BOOTS = select(pools.c.name, pools.c.last_boot_at).where(pools.c.last_boot_at.is_not(None))


def last_boots(conn) -> dict:
    """{pool: when its last VM became ready} for the pools that ever had one."""
    return dict(conn.execute(_LAST_BOOTS).all())


# --- durations and tags ---------------------------------------------------------------------
@dataclasses.dataclass
class Stats:
    """count, total, min and max of a set of duration samples (all 0 when there are none)."""

    count: int = 0
    total: float = 0.0
    low: float = 0.0
    high: float = 0.0

    def add(self, other: "Stats") -> "Stats":
        if not other.count:
            return self
        if not self.count:
            return dataclasses.replace(other)
        return Stats(self.count + other.count, self.total + other.total, min(self.low, other.low),
                     max(self.high, other.high))


_DURATION_DAYS = (select(duration_days.c.day, duration_days.c.kind, duration_days.c.pool, duration_days.c.count,
                         duration_days.c.total, duration_days.c.low, duration_days.c.high)
                  .where(duration_days.c.kind.in_(DURATION_KINDS), duration_days.c.day >= bindparam("first"),
                         duration_days.c.day <= bindparam("last")))


def duration_stats(conn, first_day: str, last_day: str) -> Iterable:
    """One row (day, kind, pool, Stats) per day, kind and pool with samples in the range, from
    the daily totals kept beside the samples (a year is a few thousand rows, not a million)."""
    rows = conn.execute(_DURATION_DAYS, {"first": first_day, "last": last_day}).all()  # fetchall: one call
    return [(day, kind, pool, Stats(count, total, low, high)) for day, kind, pool, count, total, low, high in rows]


def tag_counts(conn, first_day: str, last_day: str, name: Optional[str] = None) -> Iterable:
    """Rows (day, tag name, value, count) of the tags set in the range."""
    query = (select(vm_tags.c.day, vm_tags.c.name, vm_tags.c.value, func.count().label("n"))
             .where(vm_tags.c.day >= first_day, vm_tags.c.day <= last_day)
             .group_by(vm_tags.c.day, vm_tags.c.name, vm_tags.c.value))
    if name is not None:
        query = query.where(vm_tags.c.name == name)
    return conn.execute(query).all()


# --- tokens ---------------------------------------------------------------------------------
def token_by_hash(conn, digest: str):
    return conn.execute(select(tokens).where(tokens.c.token_hash == digest)).first()


def tokens_of_user(conn, user: str, prefix: Optional[str] = None) -> list:
    query = select(tokens).where(tokens.c.user == user).order_by(tokens.c.id)
    if prefix is not None:
        query = query.where(tokens.c.prefix == prefix)
    return list(conn.execute(query))


def running_vms_of_token(conn, digest: str) -> list:
    return [row.name for row in conn.execute(select(vms.c.name).where(
        vms.c.token_hash == digest, vms.c.state == RUNNING).order_by(vms.c.checkout_at, vms.c.id))]
