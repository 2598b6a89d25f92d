"""The statements of db/vms.py and db/checkout.py, built once: building one costs SQLAlchemy more
than SQLite takes to run it. All are run one way (db/prepared.py: ``first``/``all`` for reads,
``execute`` for writes): the hot ones prepared, those with an IN list of values one prepared
statement per number of values (their parameters ``prefix_0``, ``prefix_1``, ...), the rest
(an expanding IN list, several rows inserted at once, rarely run) through SQLAlchemy."""
from __future__ import annotations

import datetime
import functools
from typing import NamedTuple, Optional

from sqlalchemy import bindparam, delete, func, insert, literal_column, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from vmpooler.db.events import GUARDED_UPDATE
from vmpooler.db.models import tasks, vm_tags, vms
from vmpooler.db.prepared import PlainRead, PlainWrite, PreparedRead, PreparedWrite
from vmpooler.model import COMPLETED, DESTROYED, FAILED, GONE, LIVE_STATES, PENDING, READY, RUNNING, AttemptKind

CLONING_UPDATE = PreparedWrite(GUARDED_UPDATE.statement.where(vms.c.cloned_at.is_(None)))  # guard_state: pending
INSERT_VM = PreparedRead(insert(vms).returning(*vms.c))  # the new row, in the same statement
VM_TAGS = PlainRead(select(vm_tags.c.name, vm_tags.c.value).where(vm_tags.c.vm_id == bindparam("vm_id"))
                    .order_by(vm_tags.c.id))
DELETE_TAGS = PlainWrite(delete(vm_tags).where(vm_tags.c.vm_id == bindparam("b_vm_id"),
                                               vm_tags.c.name.in_(bindparam("names", expanding=True))))
INSERT_TAG = PlainWrite(insert(vm_tags))
LATEST = PreparedRead(select(vms).where(vms.c.name == bindparam("name")).order_by(vms.c.id.desc()).limit(1))
class TaskRow(NamedTuple):
    """A task of a VM as GET /vm/<host> shows it: the columns VM_TASKS reads, in its order."""
    kind: str
    arg: str
    state: str
    attempts: int
    last_error: Optional[str]
    created_at: datetime.datetime
    next_attempt_at: Optional[datetime.datetime]
    finished_at: Optional[datetime.datetime]


TASK_COLUMNS = TaskRow._fields
VM_TASKS = PlainRead(select(*(tasks.c[column] for column in TASK_COLUMNS))
                     .where(tasks.c.vm_id == bindparam("vm_id")).order_by(tasks.c.id))


def _json_rows(table, columns):
    """The VM's rows of ``table``, oldest first, as one JSON array of arrays (PostgreSQL)."""
    row = func.json_build_array(*(table.c[column] for column in columns))
    return (select(func.coalesce(func.json_agg(aggregate_order_by(row, table.c.id)), literal_column("'[]'::json")))
            .where(table.c.vm_id == vms.c.id).scalar_subquery())


#: PostgreSQL: the newest row of a name with its tags and tasks, in one statement (one round trip,
#: one snapshot: consistent without a transaction); what LATEST, VM_TAGS and VM_TASKS read
LATEST_WITH_EXTRAS = PreparedRead(select(vms, _json_rows(vm_tags, ("name", "value")).label("tag_rows"),
                                         _json_rows(tasks, TASK_COLUMNS).label("task_rows"))
                                  .where(vms.c.name == bindparam("name")).order_by(vms.c.id.desc()).limit(1))
PENDING_VMS = PreparedRead(select(vms).where(vms.c.state == PENDING).order_by(vms.c.id))
READY_DUE = PreparedRead(select(vms).where(vms.c.state == READY, or_(vms.c.checked_at.is_(None),
                                                                     vms.c.checked_at <= bindparam("checked_before"),
                                                                     vms.c.ready_at <= bindparam("ready_before"))))
EXPIRED = PreparedRead(select(vms).where(vms.c.state == RUNNING, vms.c.expires_at.is_not(None),
                                         vms.c.expires_at <= bindparam("now")))
TO_DESTROY = PreparedRead(select(vms).where(vms.c.state == COMPLETED, or_(vms.c.next_attempt_at.is_(None),
                                                                          vms.c.next_attempt_at <= bindparam("now"),
                                                                          vms.c.next_attempt_at > bindparam("horizon"))))
SHRINKABLE = PlainRead(select(vms).where(vms.c.pool == bindparam("pool"), vms.c.state.in_((PENDING, READY)),
                                         vms.c.want_id.is_(None))  # a pool's own VMs
                       .order_by(vms.c.id.desc()))
#: auto-purge's read (manager/queues.py): every VM in the given states, oldest first
IN_STATES = PlainRead(select(vms).where(vms.c.state.in_(bindparam("states", expanding=True))).order_by(vms.c.id))
LIVE_IN_POOL = PlainRead(select(vms).where(vms.c.pool == bindparam("pool"), vms.c.state.in_(LIVE_STATES + (FAILED,))))
DEAD = PlainRead(select(vms).where(vms.c.pool == bindparam("pool"), vms.c.name.in_(bindparam("names", expanding=True)),
                                  vms.c.state.in_((DESTROYED, GONE))).order_by(vms.c.id))
#: the guarded UPDATE of a failed attempt of each kind of work on a VM (the kind says which state it
#: guards with): a clone's also wants the VM still cloning, so that a late answer never touches a
#: VM that was cloned meanwhile
ATTEMPT_GUARDS = {AttemptKind.CLONE: CLONING_UPDATE, AttemptKind.DESTROY: GUARDED_UPDATE}


def numbered(prefix: str, values) -> dict:
    """The parameters of an IN list of ``in_list(prefix, len(values))``."""
    return {f"{prefix}_{i}": value for i, value in enumerate(values)}


def in_list(prefix: str, count: int) -> list:
    return [bindparam(f"{prefix}_{i}") for i in range(count)]


@functools.lru_cache(maxsize=None)
def names_taken(count: int) -> PreparedRead:
    """Which of ``count`` names (name_0, ...) a VM holds: a live one, or one destroyed ``since``."""
    return PreparedRead(select(vms.c.name).where(vms.c.name.in_(in_list("name", count)),
                                                 or_(vms.c.live_name.is_not(None),
                                                     vms.c.destroyed_at > bindparam("since"))))


@functools.lru_cache(maxsize=None)
def oldest_ready(pool_count: int) -> PreparedRead:
    """The longest-ready VM of ``pool_count`` pools (parameters pool_0, pool_1, ...: a pool or
    an alias's backends), prepared: it is the checkout's hot read. FOR UPDATE SKIP LOCKED makes
    concurrent checkouts on PostgreSQL pick different rows instead of queueing on one; SQLite,
    whose write transactions are serialised anyway, compiles it to nothing."""
    return PreparedRead(select(vms).where(vms.c.pool.in_(in_list("pool", pool_count)), vms.c.state == READY,
                                          vms.c.want_id.is_(None))  # on-demand VMs belong to their request
                        .order_by(vms.c.ready_at, vms.c.id).limit(1).with_for_update(skip_locked=True))
