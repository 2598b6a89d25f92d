"""VMs: the manager's changes to VM rows (what clients change is db/client_changes.py, the
checkout db/checkout.py) and the reads of VMs. Each public function takes the ``Database`` and
is one transaction.

Each change is an UPDATE guarded by the state the caller saw (``WHERE id = ? AND state = ?``):
when two actors race, one matches and the other matches nothing and reports False, so a VM is
never handed out twice nor destroyed while being checked out. Each appends a ``vm_events`` row
saying what changed, in the same transaction (a ready VM's periodic check only when its address
changed: ``checked_at`` is bookkeeping). A checkout of several VMs is ONE transaction: all or none.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Optional

from sqlalchemy import exc

from vmpooler.db import dead_letters, stats
from vmpooler.db import vm_statements as statements
from vmpooler.db.vm_statements import TaskRow
from vmpooler.db.database import Database, writes
from vmpooler.db.events import GUARDED_UPDATE, amend, change, log_change, record_event, transition
from vmpooler.db.prepared import Read
from vmpooler.model import (COMPLETED, DESTROYED, DONE, FAILED, GONE, LIVE_STATES, PENDING, READY, RUNNING,
                            AttemptKind, DeadLetter, DeadLetterQueue, Retry, TaskKind)

log = logging.getLogger("vmpooler.state")


# --- the pool manager's transitions ---------------------------------------------------------
@writes
def new_vms(db: Database, wanted: list, now, reserve_hours: float = 0) -> list:
    """Record clones about to start, ``wanted`` being (pool, name) pairs, in ONE transaction and
    before any provider is asked, so that a crash during a clone leaves a row to reconcile.
    Returns the new rows; a name is skipped when it is taken: by a live VM, or by one gone less
    than ``reserve_hours`` ago (so a client's late DELETE or GET of its expired VM can never
    reach the next VM of that name)."""
    try:
        with db.write() as conn:
            created = insert_new(conn, wanted, now, reserve_hours)
    except exc.IntegrityError:  # another writer took a name meanwhile (not with SQLite): next pass
        return []
    log_new(created)
    return created


def insert_new(conn, wanted: list, now, reserve_hours: float, reason: str = "clone requested", **values) -> list:
    """``new_vms`` inside the caller's transaction (``values``: further columns of every row)."""
    since = now - datetime.timedelta(hours=reserve_hours)
    names = [name for _pool, name in wanted]
    params = {"since": since, **statements.numbered("name", names)}
    taken = {row.name for row in statements.names_taken(len(names)).all(conn, params)}
    created = []
    for pool, name in wanted:
        if name in taken:
            continue
        taken.add(name)
        created.append(statements.INSERT_VM.first(conn, {
            "name": name, "live_name": name, "pool": pool.name, "provider": pool.provider,
            "template": pool.template, "state": PENDING, "state_changed_at": now, "created_at": now,
            "clone_attempts": 0, "destroy_attempts": 0, "want_id": None, **values}))
        record_event(conn, created[-1], None, PENDING, reason, now)
    return created


def log_new(created: list) -> None:
    for vm in created:
        log.info("[%s] %s: cloning from %s", vm.pool, vm.name, vm.template)


@writes
def cloned(db: Database, vm, now, ip: Optional[str] = None, ready: bool = False) -> bool:
    """The provider finished the clone: the VM is booting, and with ``ready`` (it answered its
    readiness probe at once) also ready, in the same transaction and the same guarded UPDATE
    (each change still has its event). Records the durations."""
    return cloned_many(db, [(vm, now, ip, ready)])[0]


@writes
def cloned_many(db: Database, clones: list) -> list:
    """``cloned`` of several VMs, ``[(vm, now, ip, ready)]``, in one transaction (the clones of a
    fill that ended together: manager/coalesce.py), each VM its own guarded UPDATE with its events:
    whether each was recorded (False: given up meanwhile)."""
    with db.write() as conn:
        reasons = [_record_cloned(conn, *clone) for clone in clones]
    for (vm, _now, _ip, ready), reason in zip(clones, reasons):
        if reason is not None:
            log.info("[%s] %s: %s", vm.pool, vm.name, reason[0])
            if ready:
                log_change(vm, READY, reason[1])
    return [reason is not None for reason in reasons]


def _record_cloned(conn, vm, now, ip: Optional[str], ready: bool) -> Optional[tuple]:
    """``cloned`` of one VM in the caller's transaction: the reasons of its events (cloned,
    booted), or None when the VM was no longer cloning."""
    seconds = max((now - vm.created_at).total_seconds(), 0.0)
    reason, ready_reason = f"cloned in {seconds:.2f}s", f"booted in {seconds:.2f}s"
    values = {"guard_id": vm.id, "guard_state": PENDING, "cloned_at": now, "ip": ip, "next_attempt_at": None,
              "state_changed_at": now}
    if ready:
        values.update(state=READY, ready_at=now, checked_at=now)
    if statements.CLONING_UPDATE.execute(conn, values) != 1:
        return None  # no longer cloning: given up meanwhile
    record_event(conn, vm, PENDING, PENDING, reason, now)
    stats.record_duration(conn, "clone", vm.pool, vm.name, seconds, now)
    if ready:
        record_event(conn, vm, PENDING, READY, ready_reason, now)
        stats.record_boot(conn, vm.pool, vm.name, seconds, now)
    return reason, ready_reason


@writes
def became_ready(db: Database, vm, now, ip: Optional[str] = None) -> bool:
    with db.write() as conn:
        reason = _mark_ready(conn, vm, now, ip)
    if reason is None:
        return False
    log_change(vm, READY, reason)
    return True


def _mark_ready(conn, vm, now, ip) -> Optional[str]:
    """Move a booting VM (as read: pending) to ready and record its boot duration and the pool's
    last boot; the event's reason, or None when it was no longer pending."""
    seconds = max((now - vm.created_at).total_seconds(), 0.0)
    reason = f"booted in {seconds:.2f}s"
    if not change(conn, vm, READY, reason, now, ready_at=now, checked_at=now, ip=ip or vm.ip):
        return None
    stats.record_boot(conn, vm.pool, vm.name, seconds, now)
    return reason


@writes
def checked(db: Database, vm, now, ip: Optional[str] = None) -> bool:
    """A ready VM passed its periodic check (``ip``: the address it reports now). An event only
    when the address changed: checks come every vm_checktime, and checked_at is bookkeeping."""
    ip = ip or vm.ip
    if ip != vm.ip:
        return amend(db, vm, f"address {vm.ip or '(none)'} -> {ip}", now, checked_at=now, ip=ip)
    with db.write() as conn:
        return GUARDED_UPDATE.execute(conn, {"guard_id": vm.id, "guard_state": READY, "checked_at": now}) == 1


@writes
def complete(db: Database, vm, reason: str, now, error: Optional[str] = None,
             dead_letter: Optional[DeadLetter] = None) -> bool:
    """Retire a VM: the destroy loop removes it from the provider. With ``error`` (a timeout, a
    failed check: something an operator may have to look into) it is logged as a WARNING; with
    ``dead_letter`` the failure goes to the dead-letter queue in the same transaction."""
    values = {"completed_at": now, "expires_at": None, "next_attempt_at": None}
    if error is not None:
        values["last_error"] = error
    return transition(db, vm, COMPLETED, reason, now, allowed=(PENDING, READY, RUNNING),
                      level=logging.INFO if error is None else logging.WARNING,
                      also=_dead_letter(vm, dead_letter, now), **values)


def _dead_letter(vm, letter: Optional[DeadLetter], now):
    """What ``transition`` writes beside the change: the VM's dead letter, if any."""
    if letter is None:
        return None
    return lambda conn: dead_letters.add(conn, vm, letter, now)


@writes
def attempt_failed(db: Database, vm, kind: AttemptKind, error: str, now, retry: Retry,
                   booting: bool = False, dead_letter_class: Optional[str] = None) -> bool:
    """A clone or destroy of ``vm`` did not succeed; ``retry`` says what follows (the retry
    policy's answer): its new count of attempts (unchanged when the provider's circuit breaker
    refused the call: no attempt, the VM waits for the breaker) and when the VM may be tried
    again. Given up, the VM goes to the kind's give-up state: a clone is completed (so whatever
    half-made clone exists is destroyed), a destroy fails (an operator must look). ``booting``: a
    clone attempt that failed after the clone itself (its DNS record: manager/records.py), so the
    VM is guarded as pending, not cloning. A clone given up goes to the dead-letter queue when
    ``dead_letter_class`` (the error's class name) is given."""
    values = {kind.column: retry.attempts, "last_error": error, "next_attempt_at": retry.at}
    if retry.at is None:
        reason = f"{kind} failed {retry.attempts} times, giving up: {error}"
        if kind.gives_up_to == COMPLETED:
            values["completed_at"] = now
        # a clone given up costs a VM (WARNING); a destroy given up leaves one behind (ERROR: look)
        letter = (DeadLetter(DeadLetterQueue.CLONE, dead_letter_class, error, retry.attempts)
                  if kind == AttemptKind.CLONE and dead_letter_class is not None else None)
        return transition(db, vm, kind.gives_up_to, reason, now, allowed=(kind.works_on,),
                          level=logging.WARNING if kind.gives_up_to == COMPLETED else logging.ERROR,
                          also=_dead_letter(vm, letter, now), **values)
    reason = (f"{kind} waits for the provider's circuit breaker until {retry.at:%H:%M:%S}" if retry.waits_for_breaker
              else f"{kind} attempt {retry.attempts} failed, retrying: {error}")
    guard = GUARDED_UPDATE if booting else statements.ATTEMPT_GUARDS[kind]
    if not amend(db, vm, reason, now, guard=guard, **values):
        return False
    (log.info if retry.waits_for_breaker else log.warning)("[%s] %s: %s", vm.pool, vm.name, reason)
    return True


@writes
def destroyed(db: Database, vm, now, reason: str = "destroyed") -> bool:
    return destroyed_many(db, [(vm, now, reason)])[0]


@writes
def destroyed_many(db: Database, destroys: list) -> list:
    """``destroyed`` of several completed VMs, ``[(vm, now, reason)]``, in one transaction (the
    destroys that ended together: manager/coalesce.py), each its own guarded change with its
    event: whether each was recorded."""
    with db.write() as conn:
        done = [vm.state == COMPLETED and change(conn, vm, DESTROYED, reason, now, destroyed_at=now, live_name=None,
                                                 next_attempt_at=None) for vm, now, reason in destroys]
    for (vm, _now, reason), recorded in zip(destroys, done):
        if recorded:
            log_change(vm, DESTROYED, reason)
    return done


@writes
def gone(db: Database, vm, reason: str, now) -> bool:
    """The provider no longer has the VM: forget it (a phantom otherwise)."""
    return transition(db, vm, GONE, reason, now, allowed=LIVE_STATES + (FAILED,), destroyed_at=now, live_name=None,
                   next_attempt_at=None, expires_at=None)


@writes
def discovered(db: Database, pool, name: str, now) -> Optional[int]:
    """A VM in the pool's folder that we do not know: record it as completed so it is destroyed."""
    reason = "found in the provider but unknown to the database"
    try:
        with db.write() as conn:
            vm = statements.INSERT_VM.first(conn, {
                "name": name, "live_name": name, "pool": pool.name, "provider": pool.provider,
                "template": pool.template, "state": COMPLETED, "state_changed_at": now, "created_at": now,
                "completed_at": now, "clone_attempts": 0, "destroy_attempts": 0})
            record_event(conn, vm, None, COMPLETED, reason, now)
    except exc.IntegrityError:
        return None
    log.info("[%s] %s: discovered -> completed: %s", pool.name, name, reason)
    return vm.id


@writes
def revive(db: Database, vm, now) -> bool:
    """A VM we had written off as destroyed or gone is in the provider after all: destroy it."""
    reason = f"reappeared in the provider after being {vm.state}"
    try:
        return transition(db, vm, COMPLETED, reason, now, allowed=(DESTROYED, GONE), live_name=vm.name,
                       completed_at=now, destroyed_at=None)
    except exc.IntegrityError:
        return False


# --- reads ----------------------------------------------------------------------------------
@dataclasses.dataclass
class VMExtras:
    """What GET /vm/<host> shows beside the row."""
    tags: dict
    snapshots: list
    disks: list
    #: every snapshot, revert and disk task of the VM (rows), oldest first
    tasks: list = dataclasses.field(default_factory=list)


def latest(db: Database, name: str):
    """The newest row of the VM called ``name`` (names are reused once a VM is gone), or None."""
    with db.one_statement() as conn:
        return statements.LATEST.first(conn, {"name": name})


def latest_with_extras(db: Database, name: str) -> tuple:
    """(newest row of ``name``, its VMExtras), or (None, None): one consistent read (clients poll
    GET /vm/<host>). On SQLite, three statements in one read transaction, reused until the next
    write transaction of the process that owns the file; on PostgreSQL, where another process may
    have written since, read every time, as one statement outside a transaction (one round trip)."""
    if db.is_sqlite:
        return db.cached(("vm", name), lambda conn: _latest_with_extras(conn, name))
    with db.one_statement() as conn:
        vm = statements.LATEST_WITH_EXTRAS.first(conn, {"name": name})
    if vm is None:
        return None, None
    return vm, _extras(dict(vm.tag_rows), [_task_from_json(task) for task in vm.task_rows])


def _latest_with_extras(conn, name: str) -> tuple:
    vm = statements.LATEST.first(conn, {"name": name})
    if vm is None:
        return None, None
    tags = {row.name: row.value for row in statements.VM_TAGS.all(conn, {"vm_id": vm.id})}
    return vm, _extras(tags, statements.VM_TASKS.all(conn, {"vm_id": vm.id}))


def _task_from_json(values: list) -> TaskRow:
    """A task of LATEST_WITH_EXTRAS's JSON, typed as VM_TASKS reads it: its timestamps arrive as
    text (ISO 8601, as PostgreSQL writes them)."""
    kind, arg, state, attempts, last_error, created_at, next_attempt_at, finished_at = values
    return TaskRow(kind, arg, state, attempts, last_error, datetime.datetime.fromisoformat(created_at),
                   _timestamp(next_attempt_at), _timestamp(finished_at))


def _timestamp(value: Optional[str]) -> Optional[datetime.datetime]:
    """A timestamp column that may be NULL."""
    return None if value is None else datetime.datetime.fromisoformat(value)


def _extras(tags: dict, all_tasks: list) -> VMExtras:
    done = [row for row in all_tasks if row.state == DONE]  # finished snapshots and disk additions
    return VMExtras(tags, [row.arg for row in done if row.kind == TaskKind.SNAPSHOT],
                    [row.arg for row in done if row.kind == TaskKind.DISK], all_tasks)


def _rows(db: Database, query: Read, **params) -> list:
    with db.one_statement() as conn:
        return query.all(conn, params)


def pending(db: Database) -> list:
    """Every pending VM (cloning and booting), oldest first: read once per manager pass."""
    return _rows(db, statements.PENDING_VMS)


def ready_due(db: Database, checked_before: datetime.datetime, ready_before: datetime.datetime) -> list:
    """Ready VMs whose periodic check is due, or that may have outlived the shortest ready_ttl."""
    return _rows(db, statements.READY_DUE, checked_before=checked_before, ready_before=ready_before)


def expired(db: Database, now: datetime.datetime) -> list:
    return _rows(db, statements.EXPIRED, now=now)


def to_destroy(db: Database, now: datetime.datetime, horizon: Optional[datetime.datetime] = None) -> list:
    """Completed VMs due for a destroy: no retry pending, or due, or set beyond ``horizon``."""
    return _rows(db, statements.TO_DESTROY, now=now, horizon=horizon or datetime.datetime.max)


def excess(db: Database, pool: str, count: int) -> list:
    """The ``count`` VMs to remove from a shrunk pool: pending before ready, newest first."""
    rows = _rows(db, statements.SHRINKABLE, pool=pool)
    rows.sort(key=lambda row: row.state != PENDING)
    return rows[:count]


def live_in_pool(db: Database, pool: str) -> list:
    return _rows(db, statements.LIVE_IN_POOL, pool=pool)


def live_in_states(db: Database, states: tuple) -> list:
    """Every VM in one of ``states``, oldest first (auto-purge's read, every purge_interval)."""
    return _rows(db, statements.IN_STATES, states=list(states))


def latest_dead(db: Database, pool: str, names) -> dict:
    """{name: newest destroyed/gone row} for names a provider still lists."""
    names = list(names)
    found: dict = {}
    for start in range(0, len(names), 500):
        found.update((row.name, row) for row in _rows(db, statements.DEAD, pool=pool, names=names[start:start + 500]))
    return found
