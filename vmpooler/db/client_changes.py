"""What clients change of their VMs through the API: DELETE (a VM given back: completed, for the
manager to destroy) and PUT (its lifetime and tags). The checkout is db/checkout.py. Each function
is one transaction, each change guarded by the state the VM was read in, with its event
(db/events.py), as every change of db/vms.py."""
from __future__ import annotations

import datetime
from typing import Optional

from vmpooler.db import vm_statements as statements
from vmpooler.db.checkout import expiry
from vmpooler.db.database import Database, writes
from vmpooler.db.events import GUARDED_UPDATE, changed_row, log_change, record_event
from vmpooler.model import COMPLETED, RUNNING


@writes
def delete(db: Database, vm, now):
    """A client is done with a running VM: its row as completed (the manager destroys it next), or
    None when it was no longer running."""
    if vm.state != RUNNING:
        return None
    reason = "deleted by the client"
    with db.write() as conn:
        completed = changed_row(conn, vm, COMPLETED, reason, now, completed_at=now, expires_at=None)
    if completed is not None:
        log_change(vm, COMPLETED, reason)
    return completed


@writes
def modify(db: Database, vm, now, lifetime: Optional[float] = None, tags: Optional[dict] = None) -> bool:
    """Set a VM's lifetime (hours since checkout) and/or tags in one transaction, guarded by the
    state the VM was read in, with an event saying what changed (before -> after). False when
    the VM left that state meanwhile (nothing applied)."""
    values, changes = {"state": vm.state}, []
    if lifetime is not None:
        values["lifetime"] = lifetime
        described = f"lifetime {_hours(vm.lifetime)} -> {_hours(lifetime)}"
        if vm.checkout_at is not None:
            values["expires_at"] = expiry(vm.checkout_at, lifetime)
            described += f" (expires {_when(vm.expires_at)} -> {_when(values['expires_at'])})"
        changes.append(described)
    with db.write() as conn:
        if GUARDED_UPDATE.execute(conn, {"guard_id": vm.id, "guard_state": vm.state, **values}) != 1:
            return False
        if tags:
            before = dict(statements.VM_TAGS.all(conn, {"vm_id": vm.id}))
            statements.DELETE_TAGS.execute(conn, {"b_vm_id": vm.id, "names": list(tags)})
            statements.INSERT_TAG.execute(conn, [{"vm_id": vm.id, "name": name, "value": value, "tagged_at": now,
                                                  "day": now.strftime("%Y-%m-%d")} for name, value in tags.items()])
            changes.extend(f"tag {name}: {before[name]!r} -> {value!r}" if name in before
                           else f"tag {name}: (none) -> {value!r}" for name, value in tags.items())
        if changes:
            record_event(conn, vm, vm.state, vm.state, "; ".join(changes), now)
    return True


def _hours(lifetime: Optional[float]) -> str:
    return "(the default)" if lifetime is None else f"{lifetime:g}h"


def _when(at: Optional[datetime.datetime]) -> str:
    return "never" if at is None else at.strftime("%Y-%m-%d %H:%M:%S")
