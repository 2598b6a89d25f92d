"""Retries brought forward: when a provider answers again, its clones and destroys that wait for
another attempt (``next_attempt_at`` in the future) are due at once, each with an event; clones
only as many as the caller has slots for (a clone due again takes a slot of ``task_limit``)."""
from __future__ import annotations

import logging

from sqlalchemy import bindparam, select

from vmpooler.db.database import Database, writes
from vmpooler.db.events import GUARDED_UPDATE, record_event
from vmpooler.db.models import vms
from vmpooler.model import COMPLETED, PENDING

log = logging.getLogger("vmpooler.state")

_WAITING = select(vms).where(vms.c.provider == bindparam("provider"), vms.c.next_attempt_at > bindparam("now"))
_CLONES = _WAITING.where(vms.c.state == PENDING, vms.c.cloned_at.is_(None)).order_by(vms.c.id).limit(bindparam("limit"))
_DESTROYS = _WAITING.where(vms.c.state == COMPLETED)


@writes
def retry_now(db: Database, provider: str, now, reason: str, clones: int) -> int:
    """Make the waiting destroys and at most ``clones`` waiting clones (oldest first) of
    ``provider``'s VMs due now, each guarded by its state, with an event saying why; how many."""
    params = {"provider": provider, "now": now, "limit": clones}
    with db.write() as conn:
        moved = 0
        for vm in [*conn.execute(_CLONES, params).all(), *conn.execute(_DESTROYS, params).all()]:
            if GUARDED_UPDATE.execute(conn, {"guard_id": vm.id, "guard_state": vm.state, "next_attempt_at": now}) == 1:
                record_event(conn, vm, vm.state, vm.state, reason, now)
                moved += 1
    if moved:
        log.info("provider %s: %d retries brought forward: %s", provider, moved, reason)
    return moved
