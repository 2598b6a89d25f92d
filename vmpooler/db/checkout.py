"""The checkout: the API's one change that takes VMs. Several VMs in ONE transaction, every VM
or none; each VM moved from ready to running by an UPDATE guarded by the state it was read in
(``WHERE id = ? AND state = 'ready'``), with its event, so no VM is handed out twice nor to nobody.
``take`` joins the caller's transaction (db/handout.py: a checkout under an Idempotency-Key).
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Dict, List, NamedTuple, Optional

from vmpooler.db import quotas
from vmpooler.db import vm_statements as statements
from vmpooler.db.database import Database, writes
from vmpooler.db.events import change
from vmpooler.model import READY, RUNNING

log = logging.getLogger("vmpooler.state")


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
    """A VM handed out: its hostname and the pool it came from (and, to hand it back if the answer
    never reaches the client: its row's id and the lifetime it had before)."""
    name: str
    pool: str
    id: int = 0
    lifetime: Optional[float] = None


class Shortfall(Exception):
    """Not enough ready VMs: the whole checkout was rolled back."""


def expiry(checkout_at: datetime.datetime, lifetime_hours: Optional[float]) -> Optional[datetime.datetime]:
    """When a VM checked out at ``checkout_at`` expires; None for a lifetime of 0 (never)."""
    if not lifetime_hours or lifetime_hours <= 0:
        return None
    return checkout_at + datetime.timedelta(hours=lifetime_hours)


@writes
def checkout(db: Database, wants: list, now, default_lifetime: float, owner: Optional[Owner] = None,
             owner_lifetime: Optional[float] = None, quota: Optional[int] = None) -> dict:
    """Take the wanted VMs: {requested name: [Taken]}. Raises Shortfall, or QuotaExceeded
    when the owner would hold more than ``quota`` VMs, having taken none."""
    with db.write() as conn:
        taken = take(conn, wants, now, default_lifetime, owner, owner_lifetime, quota)
    log_taken(taken, owner)
    return taken


def take(conn, wants: list, now, default_lifetime: float, owner: Optional[Owner] = None,
         owner_lifetime: Optional[float] = None, quota: Optional[int] = None) -> dict:
    """``checkout`` inside the caller's transaction (which logs ``log_taken`` once committed)."""
    taken: Dict[str, List[Taken]] = {}
    if owner is not None and quota is not None:
        quotas.check(conn, owner.user, sum(want.count for want in wants), quota)
    for want in wants:
        names = taken.setdefault(want.requested, [])
        for _ in range(want.count):
            vm = _take_one(conn, want, now, default_lifetime, owner, owner_lifetime, _checkout_reason(owner))
            if vm is None:
                raise Shortfall(want.requested)
            names.append(Taken(vm.name, vm.pool, vm.id, vm.lifetime))
    return taken


def _checkout_reason(owner: Optional[Owner]) -> str:
    return "checked out" + (f" by {owner.user}" if owner else "")


def log_taken(taken: dict, owner: Optional[Owner]) -> None:
    reason = _checkout_reason(owner)
    for vms_taken in taken.values():
        for vm in vms_taken:
            log.info("[%s] %s: %s -> %s: %s", vm.pool, vm.name, READY, RUNNING, reason)


def _take_one(conn, want: Want, now, default_lifetime, owner, owner_lifetime, reason):
    """Move the longest-ready VM of the wanted pools to running. The guarded UPDATE makes this
    safe even where another writer could interleave (PostgreSQL): a lost race tries the next."""
    for _attempt in range(5):
        vm = statements.oldest_ready(len(want.pools)).first(conn, statements.numbered("pool", want.pools))
        if vm is None:
            return None
        if change(conn, vm, RUNNING, reason, now, **running_values(vm, now, default_lifetime, owner, owner_lifetime)):
            return vm
    return None


def running_values(vm, now, default_lifetime, owner: Optional[Owner], owner_lifetime) -> dict:
    """The columns a VM handed to a client gets: checkout time, lifetime and expiry (the token
    lifetime for an owner, when set), and the owner."""
    lifetime = owner_lifetime if owner is not None and owner_lifetime else vm.lifetime
    values = {"checkout_at": now, "lifetime": lifetime,
              "expires_at": expiry(now, default_lifetime if lifetime is None else lifetime)}
    if owner is not None:
        values.update(token_hash=owner.token_hash, token_user=owner.user)
    return values
