"""Handing VMs out safely: a checkout under an Idempotency-Key, and handing back what an answer
that never reached its client took.

``checkout`` is ``checkout.checkout`` (db/checkout.py) with the key checked and its answer remembered in the same
transaction (db/idempotency.py). ``hand_back`` undoes a checkout whose client was gone before its
answer was written: each VM goes back from running to ready, guarded by the checkout that took it
(its id, ``running`` and the checkout's time: a VM that changed hands meanwhile is left alone),
with an event saying why, and the key is forgotten, in one transaction.
"""
from __future__ import annotations

import datetime
import logging
from typing import Optional

from sqlalchemy import bindparam, exc, update

from vmpooler.db import checkout as checkout_store
from vmpooler.db import idempotency
from vmpooler.db.database import Database, writes
from vmpooler.db.events import record_event
from vmpooler.db.models import vms
from vmpooler.model import READY, RUNNING

log = logging.getLogger("vmpooler.state")

_HAND_BACK = (update(vms).where(vms.c.id == bindparam("guard_id"), vms.c.state == RUNNING,
                                vms.c.checkout_at == bindparam("guard_at"))
              .values(state=READY, state_changed_at=bindparam("now"), lifetime=bindparam("lifetime_before"),
                      checkout_at=None, expires_at=None, token_hash=None, token_user=None))


@writes
def checkout(db: Database, wants: list, now, default_lifetime: float, owner: Optional[checkout_store.Owner] = None,
             owner_lifetime: Optional[float] = None, quota: Optional[int] = None,
             key: Optional[idempotency.Key] = None) -> dict:
    """``checkout.checkout`` under ``key``: raises Replay (the key's earlier answer: nothing taken) or
    KeyReused before taking anything, KeyInFlight when a concurrent request with the key
    committed first (what this one took is rolled back)."""
    if key is None:
        return checkout_store.checkout(db, wants, now, default_lifetime, owner, owner_lifetime, quota)
    try:
        with db.write() as conn:
            idempotency.check(conn, key, now)
            taken = checkout_store.take(conn, wants, now, default_lifetime, owner, owner_lifetime, quota)
            idempotency.remember(conn, key, 200, remembered(taken, now), now)
    except exc.IntegrityError as error:
        if idempotency.is_conflict(error):
            raise idempotency.KeyInFlight(key.key) from None
        raise
    checkout_store.log_taken(taken, owner)
    return taken


def remembered(taken: dict, checkout_at: datetime.datetime) -> dict:
    """What a key keeps of a checkout: enough to answer again, and to hand it back."""
    return {"checkout_at": checkout_at.isoformat(), "taken": {name: [list(vm) for vm in vms_taken]
                                                              for name, vms_taken in taken.items()}}


def recalled(answer: dict) -> tuple:
    """(taken, checkout time) from what ``remembered`` kept."""
    taken = {name: [checkout_store.Taken(*vm) for vm in vms_taken] for name, vms_taken in answer["taken"].items()}
    return taken, datetime.datetime.fromisoformat(answer["checkout_at"])


@writes
def hand_back(db: Database, taken: dict, checkout_at: datetime.datetime, reason: str, now,
              key: Optional[idempotency.Key] = None) -> list:
    """Return the VMs of a checkout made at ``checkout_at`` to ready, each only while that checkout
    still holds it; ``key`` (its Idempotency-Key) is forgotten. The VMs handed back."""
    back = []
    with db.write() as conn:
        for vm in (vm for vms_taken in taken.values() for vm in vms_taken):
            if conn.execute(_HAND_BACK, {"guard_id": vm.id, "guard_at": checkout_at, "now": now,
                                         "lifetime_before": vm.lifetime}).rowcount == 1:
                record_event(conn, vm, RUNNING, READY, reason, now)
                back.append(vm)
        if key is not None:
            idempotency.forget(conn, key)
    for vm in back:
        log.warning("[%s] %s: %s -> %s: %s", vm.pool, vm.name, RUNNING, READY, reason)
    return back
