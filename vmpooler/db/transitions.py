"""The only code that changes a VM's state.

Each public function is one transaction. Each change is an UPDATE guarded by the state the
caller saw (``WHERE id = ? AND state = ?``): when two actors race, one UPDATE matches and the
other matches nothing and reports False, so a VM is never handed out twice nor destroyed while
being checked out. Every change appends a row to ``vm_events`` in the same transaction.
"""
from __future__ import annotations

import datetime
import logging
from typing import Optional

from sqlalchemy import bindparam, case, exc, insert, or_, select, update

from vmpooler.db.database import Database
from vmpooler.db.models import duration_days, durations, pools, vm_events, vms
from vmpooler.model import COMPLETED, DESTROYED, FAILED, GONE, LIVE_STATES, PENDING, READY, RUNNING

log = logging.getLogger("vmpooler.state")


# Built once: the SET clause of an UPDATE without .values() comes from the parameters given to
# execute(), so one statement serves every transition (building one costs more than running it).
_GUARDED_UPDATE = update(vms).where(vms.c.id == bindparam("guard_id"), vms.c.state == bindparam("guard_state"))
_CLONING_UPDATE = _GUARDED_UPDATE.where(vms.c.cloned_at.is_(None))  # guard_state: pending
_INSERT_EVENT = insert(vm_events)
_INSERT_VM = insert(vms)
_FETCH = select(vms).where(vms.c.id == bindparam("vm_id"))
_NAMES_TAKEN = select(vms.c.name).where(vms.c.name.in_(bindparam("names", expanding=True)),
                                        or_(vms.c.live_name.is_not(None), vms.c.destroyed_at > bindparam("since")))
_LAST_BOOT = update(pools).where(pools.c.name == bindparam("pool_name"))
_INSERT_DURATION = insert(durations)
_INSERT_DURATION_DAY = insert(duration_days)
_SAMPLE = bindparam("sample")
_ADD_TO_DURATION_DAY = (update(duration_days)
                        .where(duration_days.c.kind == bindparam("b_kind"), duration_days.c.day == bindparam("b_day"),
                               duration_days.c.pool == bindparam("b_pool"))
                        .values(count=duration_days.c.count + 1, total=duration_days.c.total + _SAMPLE,
                                low=case((duration_days.c.low > _SAMPLE, _SAMPLE), else_=duration_days.c.low),
                                high=case((duration_days.c.high < _SAMPLE, _SAMPLE), else_=duration_days.c.high)))


def change(conn, vm, to_state: str, reason: str, now: datetime.datetime, **values) -> bool:
    """Move ``vm`` (a row with id, name, pool, state) to ``to_state`` if it is still in the state
    it was read in. Returns whether this call made the change. Runs inside the caller's
    transaction; the caller logs once it has committed (see ``log_change``)."""
    result = conn.execute(_GUARDED_UPDATE, {"guard_id": vm.id, "guard_state": vm.state, "state": to_state,
                                            "state_changed_at": now, **values})
    if result.rowcount != 1:
        return False
    record_event(conn, vm, vm.state, to_state, reason, now)
    return True


def record_event(conn, vm, from_state: Optional[str], to_state: str, reason: str, now) -> None:
    conn.execute(_INSERT_EVENT, {"vm_id": vm.id, "vm_name": vm.name, "pool": vm.pool, "at": now,
                                 "from_state": from_state, "to_state": to_state, "reason": reason})


def log_change(vm, to_state: str, reason: str) -> None:
    log.info("[%s] %s: %s -> %s: %s", vm.pool, vm.name, vm.state, to_state, reason)


def _single(db: Database, vm, to_state: str, reason: str, now, allowed=LIVE_STATES, **values) -> bool:
    """One guarded change in its own transaction; refused outright when ``vm`` was not read in
    one of the ``allowed`` states."""
    if vm.state not in allowed:
        return False
    with db.write() as conn:
        changed = change(conn, vm, to_state, reason, now, **values)
    if changed:
        log_change(vm, to_state, reason)
    return changed


def fetch(conn, vm_id: int):
    return conn.execute(_FETCH, {"vm_id": vm_id}).first()


# --- the pool manager's transitions ---------------------------------------------------------
def new_vm(db: Database, pool, name: str, now, reserve_hours: float = 0) -> Optional[int]:
    """Record one clone about to start (see ``new_vms``); its id, or None when the name is taken."""
    created = new_vms(db, [(pool, name)], now, reserve_hours)
    return created[0].id if created else None


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
    taken = {row.name for row in conn.execute(_NAMES_TAKEN, {"names": names, "since": since})}
    created = []
    for pool, name in wanted:
        if name in taken:
            continue
        taken.add(name)
        vm_id = conn.execute(_INSERT_VM, {
            "name": name, "live_name": name, "pool": pool.name, "provider": pool.provider,
            "template": pool.template, "state": PENDING, "state_changed_at": now, "created_at": now,
            "clone_attempts": 0, "destroy_attempts": 0, "want_id": None, **values}).inserted_primary_key[0]
        created.append(fetch(conn, vm_id))
        record_event(conn, created[-1], None, PENDING, reason, now)
    return created


def log_new(created: list) -> None:
    for vm in created:
        log.info("[%s] %s: cloning from %s", vm.pool, vm.name, vm.template)


def cloned(db: Database, vm, now, ip: Optional[str] = None, ready: bool = False) -> bool:
    """The provider finished the clone: the VM is booting, and with ``ready`` (it answered its
    readiness probe at once) also ready, in the same transaction. Records the durations."""
    with db.write() as conn:
        reason = _mark_cloned(conn, vm, now, ip)
        if reason is None:
            return False
        ready_reason = _mark_ready(conn, vm, now, ip) if ready else None
    log.info("[%s] %s: %s", vm.pool, vm.name, reason)
    if ready_reason:
        log_change(vm, READY, ready_reason)
    return True


def _mark_cloned(conn, vm, now, ip) -> Optional[str]:
    """Set cloned_at on a cloning VM; the event's reason, or None when it was no longer cloning."""
    seconds = max((now - vm.created_at).total_seconds(), 0.0)
    reason = f"cloned in {seconds:.2f}s"
    result = conn.execute(_CLONING_UPDATE, {"guard_id": vm.id, "guard_state": PENDING, "cloned_at": now,
                                            "ip": ip, "next_attempt_at": None, "state_changed_at": now})
    if result.rowcount != 1:
        return None
    record_event(conn, vm, PENDING, PENDING, reason, now)
    record_duration(conn, "clone", vm.pool, vm.name, seconds, now)
    return reason


def clone_failed(db: Database, vm, error: str, now, retry_at: Optional[datetime.datetime]) -> bool:
    """A clone attempt failed. With ``retry_at`` the VM waits for another attempt; without, it is
    given up and completed, so that whatever half-made clone exists is destroyed."""
    attempts = vm.clone_attempts + 1
    if retry_at is None:
        reason = f"clone failed {attempts} times, giving up: {error}"
        return _single(db, vm, COMPLETED, reason, now, allowed=(PENDING,), clone_attempts=attempts,
                       last_error=error, completed_at=now, next_attempt_at=None)
    with db.write() as conn:
        result = conn.execute(_CLONING_UPDATE, {"guard_id": vm.id, "guard_state": PENDING,
                                                "clone_attempts": attempts, "last_error": error,
                                                "next_attempt_at": retry_at})
        if result.rowcount != 1:
            return False
        record_event(conn, vm, PENDING, PENDING, f"clone attempt {attempts} failed, retrying: {error}", now)
    log.warning("[%s] %s: clone attempt %d failed, retrying: %s", vm.pool, vm.name, attempts, error)
    return True


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
    record_duration(conn, "boot", vm.pool, vm.name, seconds, now)
    conn.execute(_LAST_BOOT, {"pool_name": vm.pool, "last_boot_at": now})
    return reason


def checked(db: Database, vm, now, ip: Optional[str] = None) -> bool:
    """A ready VM passed its periodic check (``ip``: the address it reports now)."""
    with db.write() as conn:
        return conn.execute(_GUARDED_UPDATE, {"guard_id": vm.id, "guard_state": READY, "checked_at": now,
                                              "ip": ip or vm.ip}).rowcount == 1


def complete(db: Database, vm, reason: str, now, error: Optional[str] = None) -> bool:
    """Retire a VM: the destroy loop removes it from the provider."""
    values = {"completed_at": now, "expires_at": None, "next_attempt_at": None}
    if error is not None:
        values["last_error"] = error
    return _single(db, vm, COMPLETED, reason, now, allowed=(PENDING, READY, RUNNING), **values)


def destroyed(db: Database, vm, now, reason: str = "destroyed") -> bool:
    return _single(db, vm, DESTROYED, reason, now, allowed=(COMPLETED,), destroyed_at=now, live_name=None,
                   next_attempt_at=None)


def destroy_failed(db: Database, vm, error: str, now, retry_at: Optional[datetime.datetime]) -> bool:
    """A destroy attempt failed: retry later, or give up (``failed``: an operator must look)."""
    attempts = vm.destroy_attempts + 1
    if retry_at is None:
        reason = f"destroy failed {attempts} times, giving up: {error}"
        with db.write() as conn:
            changed = change(conn, vm, FAILED, reason, now, destroy_attempts=attempts, last_error=error,
                             next_attempt_at=None)
        if changed:
            log.error("[%s] %s: %s", vm.pool, vm.name, reason)
        return changed
    with db.write() as conn:
        result = conn.execute(_GUARDED_UPDATE, {"guard_id": vm.id, "guard_state": vm.state,
                                                "destroy_attempts": attempts, "last_error": error,
                                                "next_attempt_at": retry_at})
        if result.rowcount != 1:
            return False
        record_event(conn, vm, vm.state, vm.state, f"destroy attempt {attempts} failed, retrying: {error}", now)
    log.warning("[%s] %s: destroy attempt %d failed, retrying: %s", vm.pool, vm.name, attempts, error)
    return True


def gone(db: Database, vm, reason: str, now) -> bool:
    """The provider no longer has the VM: forget it (a phantom otherwise)."""
    return _single(db, vm, GONE, reason, now, allowed=LIVE_STATES + (FAILED,), destroyed_at=now, live_name=None,
                   next_attempt_at=None, expires_at=None)


def discovered(db: Database, pool, name: str, now) -> Optional[int]:
    """A VM in the pool's folder that we do not know: record it as completed so it is destroyed."""
    reason = "found in the provider but unknown to the database"
    try:
        with db.write() as conn:
            vm_id = conn.execute(insert(vms).values(
                name=name, live_name=name, pool=pool.name, provider=pool.provider, template=pool.template,
                state=COMPLETED, state_changed_at=now, created_at=now, completed_at=now,
                clone_attempts=0, destroy_attempts=0)).inserted_primary_key[0]
            record_event(conn, fetch(conn, vm_id), None, COMPLETED, reason, now)
    except exc.IntegrityError:
        return None
    log.info("[%s] %s: discovered -> completed: %s", pool.name, name, reason)
    return vm_id


def revive(db: Database, vm, now) -> bool:
    """A VM we had written off as destroyed or gone is in the provider after all: destroy it."""
    reason = f"reappeared in the provider after being {vm.state}"
    try:
        return _single(db, vm, COMPLETED, reason, now, allowed=(DESTROYED, GONE), live_name=vm.name,
                       completed_at=now, destroyed_at=None)
    except exc.IntegrityError:
        return False


def record_duration(conn, kind: str, pool: str, vm_name: str, seconds: float, at) -> None:
    """Append a clone or boot sample and fold it into its day's totals (update, else insert:
    portable, and safe because the caller's write transaction serialises writers)."""
    day = at.strftime("%Y-%m-%d")
    conn.execute(_INSERT_DURATION, {"kind": kind, "pool": pool, "vm_name": vm_name, "seconds": seconds, "at": at,
                                    "day": day})
    updated = conn.execute(_ADD_TO_DURATION_DAY, {"b_kind": kind, "b_day": day, "b_pool": pool, "sample": seconds})
    if updated.rowcount == 0:
        conn.execute(_INSERT_DURATION_DAY, {"kind": kind, "day": day, "pool": pool, "count": 1, "total": seconds,
                                            "low": seconds, "high": seconds})


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


__all__ = ["LIVE_STATES", "change", "record_event", "log_change", "new_vm", "new_vms", "insert_new", "log_new", "cloned", "clone_failed",
           "became_ready", "checked", "complete", "destroyed", "destroy_failed", "gone", "discovered",
           "revive", "sync_pools", "fetch", "record_duration"]
