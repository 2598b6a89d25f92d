"""The audit trail: every change to a VM row is a guarded UPDATE plus a ``vm_events`` row saying
what changed, in one transaction. These are the building blocks of db/vms.py (and of tests'
fixtures); the functions taking a ``conn`` join a transaction opened there.
"""
from __future__ import annotations

import datetime
import logging
from typing import Optional

from sqlalchemy import bindparam, insert, select, update

from vmpooler.db import shared
from vmpooler.db.database import Database
from vmpooler.db.models import vm_events, vms
from vmpooler.db.prepared import PlainRead, PreparedRead, PreparedWrite
from vmpooler.model import LIVE_STATES

log = logging.getLogger("vmpooler.state")

# Built once: the SET clause of an UPDATE without .values() comes from the parameters given to
# execute(), so one statement serves every change (building one costs more than running it).
# Both are the hot writes of every transition: prepared (db/prepared.py).
GUARDED_UPDATE = PreparedWrite(update(vms).where(vms.c.id == bindparam("guard_id"),
                                                 vms.c.state == bindparam("guard_state")))
#: the same change, answering the row as it is after it (for a caller that acts on it next)
_GUARDED_UPDATE_RETURNING = PreparedRead(update(vms).where(vms.c.id == bindparam("guard_id"),
                                                           vms.c.state == bindparam("guard_state")).returning(*vms.c))
_INSERT_EVENT = PreparedWrite(insert(vm_events))
_FETCH = PlainRead(select(vms).where(vms.c.id == bindparam("vm_id")))


def change(conn, vm, to_state: str, reason: str, now: datetime.datetime, **values) -> bool:
    """Move ``vm`` (a row with id, name, pool, state) to ``to_state`` if it is still in the state
    it was read in. Returns whether this call made the change; the caller logs once it has
    committed (see ``log_change``)."""
    if GUARDED_UPDATE.execute(conn, _guarded(vm, to_state, now, values)) != 1:
        return False
    record_event(conn, vm, vm.state, to_state, reason, now)
    return True


def changed_row(conn, vm, to_state: str, reason: str, now: datetime.datetime, **values):
    """``change``, answering the row as it is after the change, or None when it was not made."""
    row = _GUARDED_UPDATE_RETURNING.first(conn, _guarded(vm, to_state, now, values))
    if row is not None:
        record_event(conn, vm, vm.state, to_state, reason, now)
    return row


def _guarded(vm, to_state: str, now: datetime.datetime, values: dict) -> dict:
    return {"guard_id": vm.id, "guard_state": vm.state, "state": to_state, "state_changed_at": now, **values}


def record_event(conn, vm, from_state: Optional[str], to_state: str, reason: str, now) -> None:
    """The change's ``vm_events`` row, inserted with the transaction's others as it commits
    (db/shared.py: one statement for all)."""
    shared.append(conn, "vm_events", {"vm_id": vm.id, "vm_name": vm.name, "pool": vm.pool, "at": now,
                                      "from_state": from_state, "to_state": to_state, "reason": reason},
                  _INSERT_EVENT)


def fetch(conn, vm_id: int):
    return _FETCH.first(conn, {"vm_id": vm_id})


def log_change(vm, to_state: str, reason: str, level: int = logging.INFO) -> None:
    """One line per change: INFO for normal life, WARNING or ERROR for what went wrong (``level``)."""
    log.log(level, "[%s] %s: %s -> %s: %s", vm.pool, vm.name, vm.state, to_state, reason)


def transition(db: Database, vm, to_state: str, reason: str, now, allowed=LIVE_STATES, level: int = logging.INFO,
               also=None, **values) -> bool:
    """One guarded change in its own transaction; refused outright when ``vm`` was not read in
    one of the ``allowed`` states; logged at ``level`` once committed. ``also(conn)``, when given,
    writes what must commit with the change (a dead letter), only if the change was made."""
    if vm.state not in allowed:
        return False
    with db.write() as conn:
        changed = change(conn, vm, to_state, reason, now, **values)
        if changed and also is not None:
            also(conn)
    if changed:
        log_change(vm, to_state, reason, level)
    return changed


def amend(db: Database, vm, reason: str, now, guard=GUARDED_UPDATE, **values) -> bool:
    """Change columns of ``vm`` but not its state (still guarded by it), with an event."""
    with db.write() as conn:
        if guard.execute(conn, {"guard_id": vm.id, "guard_state": vm.state, **values}) != 1:
            return False
        record_event(conn, vm, vm.state, vm.state, reason, now)
    return True
