"""State changes the API asks for: checkout, delete, lifetime, tags and queued tasks.

A checkout of several VMs is ONE transaction: either every requested VM moves ready -> running
or, at the first shortfall, the transaction rolls back and nothing was taken.
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import NamedTuple, Optional

from sqlalchemy import delete as sql_delete
from sqlalchemy import bindparam, insert, select, update

from vmpooler.db.database import Database
from vmpooler.db.models import COMPLETED, QUEUED, READY, RUNNING, tasks, vm_tags, vms
from vmpooler.db.transitions import change, log_change


@dataclasses.dataclass(frozen=True)
class Owner:
    """Who checks a VM out: the token's hash and its user."""

    token_hash: str
    user: str


@dataclasses.dataclass(frozen=True)
class Want:
    """``count`` VMs for the requested name (a pool or an alias), from any of ``pools``."""

    requested: str
    pools: tuple
    count: int


class Taken(NamedTuple):
    """A VM handed out: its hostname and the pool it came from."""

    name: str
    pool: str


class Shortfall(Exception):
    """Not enough ready VMs: the whole checkout was rolled back."""


def expiry(checkout_at: datetime.datetime, lifetime_hours: Optional[float]) -> Optional[datetime.datetime]:
    """When a VM checked out at ``checkout_at`` expires; None for a lifetime of 0 (never)."""
    if not lifetime_hours or lifetime_hours <= 0:
        return None
    return checkout_at + datetime.timedelta(hours=lifetime_hours)


def checkout(db: Database, wants: list, now, default_lifetime: float, owner: Optional[Owner] = None,
             owner_lifetime: Optional[float] = None) -> dict:
    """Take the wanted VMs: {requested name: [Taken]}. Raises Shortfall, having taken none."""
    taken, moved = {}, []
    with db.write() as conn:
        for want in wants:
            names = taken.setdefault(want.requested, [])
            for _ in range(want.count):
                vm = _take_one(conn, want, now, default_lifetime, owner, owner_lifetime)
                if vm is None:
                    raise Shortfall(want.requested)
                names.append(Taken(vm.name, vm.pool))
                moved.append(vm)
    for vm in moved:
        log_change(vm, RUNNING, "checked out" + (f" by {owner.user}" if owner else ""))
    return taken


# The longest-ready VM of some pools; built once (see transitions._GUARDED_UPDATE). FOR UPDATE
# SKIP LOCKED makes concurrent checkouts on PostgreSQL pick different rows instead of queueing on
# one; SQLite, whose write transactions are serialised anyway, compiles it to nothing.
_OLDEST_READY = (select(vms).where(vms.c.pool.in_(bindparam("pools", expanding=True)), vms.c.state == READY)
                 .order_by(vms.c.ready_at, vms.c.id).limit(1).with_for_update(skip_locked=True))


def _take_one(conn, want: Want, now, default_lifetime, owner, owner_lifetime):
    """Move the longest-ready VM of the wanted pools to running. The guarded UPDATE makes this
    safe even where another writer could interleave (PostgreSQL): a lost race tries the next."""
    for _attempt in range(5):
        vm = conn.execute(_OLDEST_READY, {"pools": list(want.pools)}).first()
        if vm is None:
            return None
        lifetime = owner_lifetime if owner is not None and owner_lifetime else vm.lifetime
        values = {"checkout_at": now, "lifetime": lifetime,
                  "expires_at": expiry(now, default_lifetime if lifetime is None else lifetime)}
        if owner is not None:
            values.update(token_hash=owner.token_hash, token_user=owner.user)
        reason = "checked out" + (f" by {owner.user}" if owner else "")
        if change(conn, vm, RUNNING, reason, now, **values):
            return vm
    return None


def delete(db: Database, vm, now) -> bool:
    """A client is done with a running VM: the destroy loop removes it."""
    if vm.state != RUNNING:
        return False
    with db.write() as conn:
        changed = change(conn, vm, COMPLETED, "deleted by the client", now, completed_at=now, expires_at=None)
    if changed:
        log_change(vm, COMPLETED, "deleted by the client")
    return changed


def modify(db: Database, vm, now, default_lifetime: float, lifetime: Optional[int] = None,
           tags: Optional[dict] = None) -> bool:
    """Set a VM's lifetime (hours since checkout) and/or tags in one transaction. False when the
    VM left its state meanwhile (nothing applied)."""
    with db.write() as conn:
        if lifetime is not None:
            values = {"lifetime": lifetime}
            if vm.checkout_at is not None:
                values["expires_at"] = expiry(vm.checkout_at, lifetime)
            result = conn.execute(update(vms).where(vms.c.id == vm.id, vms.c.state == vm.state).values(**values))
            if result.rowcount != 1:
                return False
        for name, value in (tags or {}).items():
            conn.execute(sql_delete(vm_tags).where(vm_tags.c.vm_id == vm.id, vm_tags.c.name == name))
            conn.execute(insert(vm_tags).values(vm_id=vm.id, name=name, value=value, tagged_at=now,
                                                day=now.strftime("%Y-%m-%d")))
    return True


def queue_task(db: Database, vm, kind: str, arg: str, now) -> int:
    """Queue a snapshot, revert or disk task for the manager. Returns the task's id."""
    with db.write() as conn:
        return conn.execute(insert(tasks).values(vm_id=vm.id, kind=kind, arg=arg, state=QUEUED, attempts=0,
                                                 created_at=now)).inserted_primary_key[0]
