"""Statistics: clone and boot durations with their daily totals, pool counts, last boots, tags.

Aggregates are computed by the database (GROUP BY), so the number of queries does not grow with
the number of pools and no raw sample rows reach Python. Every public function takes the
``Database`` and runs one read or write transaction, except ``record_duration`` and
``record_boot``: a sample must commit with the VM transition that measured it, so they join that
transaction (db/vms.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, List, NamedTuple, Optional

from sqlalchemy import and_, bindparam, case, func, insert, inspect, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from vmpooler.db import shared
from vmpooler.db.database import Database, writes
from vmpooler.db.models import duration_days, durations, pools, vm_tags, vms
from vmpooler.db.prepared import PreparedRead, PreparedWrite
from vmpooler.model import COMPLETED, LIVE_STATES, PENDING, READY, RUNNING, VMState

DURATION_KINDS = ("boot", "clone")


@dataclasses.dataclass(frozen=True)
class PoolCounts:
    """A pool's live VMs by what they are doing (``pool_counts``). ``cloning`` and ``booting``
    are the two parts of ``pending``; ``clone_slots`` are the cloning ones not waiting out a
    retry backoff (clones running now or due to (re)start); ``ondemand`` are VMs cloned for an
    on-demand request and not yet handed over: counted in ``pending``, never in ``ready``."""

    pending: int = 0
    cloning: int = 0
    booting: int = 0
    ready: int = 0
    running: int = 0
    completed: int = 0
    clone_slots: int = 0
    ondemand: int = 0

    @property
    def stock(self) -> int:
        """The pool's own VMs, pending or ready: what its size is kept by."""
        return self.pending - self.ondemand + self.ready

    @classmethod
    def total(cls, counts: Iterable["PoolCounts"]) -> "PoolCounts":
        """The sum over several pools."""
        counts = list(counts)
        return cls(*(sum(getattr(c, field.name) for c in counts) for field in dataclasses.fields(cls)))


NO_VMS = PoolCounts()

# Built once: building a statement costs SQLAlchemy more than SQLite takes to run it.
_CLONING = and_(vms.c.state == PENDING, vms.c.cloned_at.is_(None))
_WAITING = and_(_CLONING, vms.c.next_attempt_at.is_not(None), vms.c.next_attempt_at > bindparam("now"))


def _counts_of(states: tuple) -> PreparedRead:
    """The grouped count over VMs in ``states``, prepared (db/prepared.py): the manager runs it
    at every refill. Each state is a bind of its own (an IN list of one expanding bind cannot be
    prepared)."""
    in_states: List[Any] = [bindparam(f"counted_{i}", value=state) for i, state in enumerate(states)]
    return PreparedRead(
        select(vms.c.pool, vms.c.state, func.count().label("vms"),
               func.sum(case((_CLONING, 1), else_=0)).label("cloning"),
               func.sum(case((_WAITING, 1), else_=0)).label("waiting"),
               func.sum(case((vms.c.want_id.is_not(None), 1), else_=0)).label("ondemand"))
        .where(vms.c.state.in_(in_states)).group_by(vms.c.state, vms.c.pool))


_POOL_COUNTS = _counts_of(LIVE_STATES)
_STOCK_COUNTS = _counts_of((PENDING, READY))
_LAST_BOOTS = select(pools.c.name, pools.c.last_boot_at).where(pools.c.last_boot_at.is_not(None))
_DURATION_DAYS = (select(duration_days.c.day, duration_days.c.kind, duration_days.c.pool, duration_days.c.count,
                         duration_days.c.total, duration_days.c.low, duration_days.c.high)
                  .where(duration_days.c.kind.in_(DURATION_KINDS), duration_days.c.day >= bindparam("first"),
                         duration_days.c.day <= bindparam("last")))
# The writes of every VM that boots: prepared (db/prepared.py).
_LAST_BOOT = PreparedWrite(update(pools).where(pools.c.name == bindparam("pool_name")))
_INSERT_DURATION = PreparedWrite(insert(durations))


# --- pools ----------------------------------------------------------------------------------
# Raw SQL: the on-demand tables arrive with their own migration; until then there is nothing to count.
_ONDEMAND_WAITING = text("SELECT count(*) FROM ondemand_requests WHERE state = 'pending'")


def ondemand_waiting(db: Database) -> Optional[int]:
    """On-demand requests waiting for their VMs; None while the database has no on-demand table."""
    with db.read() as conn:
        if not inspect(conn).has_table("ondemand_requests"):
            return None
        return conn.execute(_ONDEMAND_WAITING).scalar_one()


def pool_counts(db: Database, now) -> Dict[str, PoolCounts]:
    """{pool: PoolCounts} over live VMs (a pool without any is missing: ``NO_VMS``), in ONE
    grouped query (an index-only scan of ix_vms_state_pool_counts). cloning = pending without
    cloned_at; booting = the other pending ones; clone_slots = the cloning ones not waiting out a
    retry backoff, on-demand ones included. On-demand VMs not yet handed over (pending or ready)
    count as pending, never as ready (no checkout can take them), and a pool's size is kept by its
    other VMs (``PoolCounts.stock``)."""
    return _counted(db, _POOL_COUNTS, now)


def stock_counts(db: Database, now) -> Dict[str, PoolCounts]:
    """``pool_counts`` of the pending and ready VMs only (running and completed ones count 0):
    all the pool manager needs to keep pools at their size and clones within ``task_limit``, and
    it scans only those rows of the index (pools' running VMs are often most of the table)."""
    return _counted(db, _STOCK_COUNTS, now)


class _StateCount(NamedTuple):
    """One row of the grouped count: a pool's VMs in one state."""
    vms: int = 0
    cloning: int = 0
    waiting: int = 0
    ondemand: int = 0


def _counted(db: Database, query, now) -> Dict[str, PoolCounts]:
    by_pool: Dict[str, Dict[VMState, _StateCount]] = {}
    with db.one_statement() as conn:
        rows = query.all(conn, {"now": now})
    for pool, state, count, cloning_count, waiting_count, ondemand_count in rows:
        by_pool.setdefault(pool, {})[VMState(state)] = _StateCount(
            count, int(cloning_count or 0), int(waiting_count or 0), int(ondemand_count or 0))
    return {pool: _pool_counts(states) for pool, states in by_pool.items()}


def _pool_counts(states: Dict[VMState, _StateCount]) -> PoolCounts:
    none = _StateCount()
    pending, ready = states.get(PENDING, none), states.get(READY, none)
    return PoolCounts(pending=pending.vms + ready.ondemand, cloning=pending.cloning,
                      booting=pending.vms - pending.cloning, ready=ready.vms - ready.ondemand,
                      running=states.get(RUNNING, none).vms, completed=states.get(COMPLETED, none).vms,
                      clone_slots=pending.cloning - pending.waiting, ondemand=pending.ondemand + ready.ondemand)


def last_boots(db: Database) -> dict:
    """{pool: when its last VM became ready} for the pools that ever had one."""
    with db.read() as conn:
        return dict(conn.execute(_LAST_BOOTS).all())


@writes
def sync_pools(db: Database, pool_configs, now) -> None:
    """Mirror the configured pools into the pools table (for operators' queries and lastBoot)."""
    with db.write() as conn:
        known = {row.name for row in conn.execute(select(pools.c.name))}
        for pool in pool_configs:
            values = {"provider": pool.provider, "template": pool.template, "size": pool.size, "updated_at": now}
            if pool.name in known:
                conn.execute(update(pools).where(pools.c.name == pool.name).values(**values))
            else:
                conn.execute(insert(pools).values(name=pool.name, **values))


# --- durations ------------------------------------------------------------------------------
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


def record_duration(conn, kind: str, pool: str, vm_name: str, seconds: float, at) -> None:
    """Append a clone or boot sample and fold it into its day's totals. Joins the caller's
    transaction: the sample commits with the transition that measured it (inserted with the
    transaction's other samples as it commits). The day's totals are a row every clone of the pool
    changes: noted, and changed once per transaction just before it commits, in the one order of
    db/shared.py."""
    day = at.strftime("%Y-%m-%d")
    shared.append(conn, "durations", {"kind": kind, "pool": pool, "vm_name": vm_name, "seconds": seconds, "at": at,
                                      "day": day}, _INSERT_DURATION)
    shared.defer(conn, ("duration_days", kind, day, pool), seconds, _add_to_duration_day)


def _add_to_duration_day(conn, key: tuple, samples: list) -> None:
    """Fold ``samples`` into the day's totals in one statement that inserts the day's row or adds
    to it (INSERT ... ON CONFLICT DO UPDATE: two transactions adding a day's first samples at once
    never race into a duplicate key)."""
    _table, kind, day, pool = key
    statement = _UPSERT_DURATION_DAY[conn.dialect.name]
    conn.execute(statement, {"kind": kind, "day": day, "pool": pool, "count": len(samples), "total": sum(samples),
                             "low": min(samples), "high": max(samples)})


def _upsert_duration_day(dialect) -> object:
    statement = dialect.insert(duration_days)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[duration_days.c.kind, duration_days.c.day, duration_days.c.pool],
        set_={"count": duration_days.c.count + new.count, "total": duration_days.c.total + new.total,
              "low": case((new.low < duration_days.c.low, new.low), else_=duration_days.c.low),
              "high": case((new.high > duration_days.c.high, new.high), else_=duration_days.c.high)})


_UPSERT_DURATION_DAY = {"sqlite": _upsert_duration_day(sqlite), "postgresql": _upsert_duration_day(postgresql)}


def record_boot(conn, pool: str, vm_name: str, seconds: float, at) -> None:
    """A VM of ``pool`` became ready: its boot sample and the pool's last boot (lastBoot in
    /status), in the caller's transaction (the pool's row noted like the day's totals)."""
    record_duration(conn, "boot", pool, vm_name, seconds, at)
    shared.defer(conn, ("pools", pool), at, _set_last_boot)


def _set_last_boot(conn, key: tuple, times: list) -> None:
    _LAST_BOOT.execute(conn, {"pool_name": key[1], "last_boot_at": max(times)})


def duration_stats(db: Database, first_day: str, last_day: str) -> Iterable:
    """One row (day, kind, pool, Stats) per day, kind and pool with samples in the range, from
    the daily totals kept beside the samples (a year is a few thousand rows, not a million)."""
    with db.read() as conn:
        rows = conn.execute(_DURATION_DAYS, {"first": first_day, "last": last_day}).all()  # fetchall: one call
    return [(day, kind, pool, Stats(count, total, low, high)) for day, kind, pool, count, total, low, high in rows]


# --- tags -----------------------------------------------------------------------------------
def tag_counts(db: Database, first_day: str, last_day: str, name: Optional[str] = None) -> Iterable:
    """Rows (day, tag name, value, count) of the tags set in the range."""
    query = (select(vm_tags.c.day, vm_tags.c.name, vm_tags.c.value, func.count().label("n"))
             .where(vm_tags.c.day >= first_day, vm_tags.c.day <= last_day)
             .group_by(vm_tags.c.day, vm_tags.c.name, vm_tags.c.value))
    if name is not None:
        query = query.where(vm_tags.c.name == name)
    with db.read() as conn:
        return conn.execute(query).all()
