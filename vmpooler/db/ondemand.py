"""On-demand requests: their rows, and every change of a request with the VMs it holds.

A request is ``pending`` until each of its wants (``count`` VMs of one pool, under the name the
client asked for) has its VMs ready, then ``ready``: handed over, its VMs running and the
requester's, in ONE transaction. It may instead become ``failed`` (not filled in time, or a clone
that cannot succeed) or ``deleted`` (cancelled by the client); the same transaction completes its
VMs, so the destroy loop removes them. Each change is guarded by the state it expects, like every
VM change (``events.change``): of two actors racing (the manager filling a request, the
client cancelling it) exactly one wins, and a request once ready can never fail afterwards.

VMs cloned for a request carry ``want_id`` from their first row on: they are never counted in,
nor handed out from, their pool.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from sqlalchemy import bindparam, exc, insert, select, update

from vmpooler.db import dead_letters, idempotency, quotas
from vmpooler.db.database import Database, writes
from vmpooler.db.events import change, log_change
from vmpooler.db.models import ondemand_requests, ondemand_wants, vms
from vmpooler.db.vms import insert_new, log_new
from vmpooler.db.checkout import Owner, running_values
from vmpooler.model import (COMPLETED, OD_DELETED, OD_FAILED, OD_PENDING, OD_READY, PENDING, READY, RUNNING,
                            DeadLetter, DeadLetterQueue)

#: the VM states a request's VM may be in before it is handed over
WAITING = (PENDING, READY)


class DuplicateRequest(Exception):
    """A request with this request_id exists already."""


class Abandoned(Exception):
    """A guard failed halfway through a change: roll the whole transaction back."""


@dataclasses.dataclass
class Request:
    """A request with what it asked for and its VMs (rows of ``vms``)."""

    row: Any  # the ondemand_requests row
    wants: list
    vms: list

    @property
    def owner(self) -> Optional[Owner]:
        return Owner(self.row.token_hash, self.row.token_user) if self.row.token_hash else None

    def vms_of(self, want, states) -> list:
        return [vm for vm in self.vms if vm.want_id == want.id and vm.state in states]

    def filled(self) -> bool:
        return all(len(self.vms_of(want, (READY,))) >= want.count for want in self.wants)


# --- the API's side ---------------------------------------------------------------------------
_BY_REQUEST_ID = select(ondemand_requests).where(ondemand_requests.c.request_id == bindparam("request_id"))


@writes
def create(db: Database, request_id: str, wants: list, now, owner: Optional[Owner] = None,
           quota: Optional[int] = None, key: Optional[idempotency.Key] = None, generated: bool = False) -> None:
    """Record a request for ``wants`` ((requested name, pool, count) triples). Raises
    DuplicateRequest (also when a concurrent POST with the same id commits first: the unique
    constraint decides) or QuotaExceeded, having recorded nothing; with an Idempotency-Key
    ``key``, Replay or KeyReused as db/idempotency.py says (KeyInFlight when a concurrent POST
    with the key committed first). ``generated``: the request_id is ours, not the client's (kept
    with the key's answer)."""
    try:
        with db.write() as conn:
            if key is not None:
                idempotency.check(conn, key, now)
            if conn.execute(_BY_REQUEST_ID, {"request_id": request_id}).first() is not None:
                raise DuplicateRequest(request_id)
            if owner is not None and quota is not None:
                quotas.check(conn, owner.user, sum(count for _name, _pool, count in wants), quota)
            ref = conn.execute(insert(ondemand_requests).values(
                request_id=request_id, state=OD_PENDING, created_at=now, state_changed_at=now,
                token_hash=owner.token_hash if owner else None,
                token_user=owner.user if owner else None)).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(insert(ondemand_wants), [{"request_ref": ref, "requested": name, "pool": pool, "count": count}
                                                  for name, pool, count in wants])
            if key is not None:
                idempotency.remember(conn, key, 201, {"request_id": request_id, "generated": generated}, now)
    except exc.IntegrityError as error:
        if idempotency.is_conflict(error) and key is not None:
            raise idempotency.KeyInFlight(key.key) from None
        raise DuplicateRequest(request_id) from None


def find(db: Database, request_id: str) -> Optional[Request]:
    """The request with its wants and all its VMs, or None."""
    with db.read() as conn:
        row = conn.execute(_BY_REQUEST_ID, {"request_id": request_id}).first()
        return None if row is None else _load(conn, [row])[0]


@writes
def cancel(db: Database, request_id: str, now, reason: Optional[str] = None,
           key: Optional[idempotency.Key] = None) -> Optional[bool]:
    """The client deletes its request: False when it was deleted already, None when unknown;
    otherwise it is deleted and its VMs (handed over or not) are completed, ``reason`` (by
    default: deleted) in their events. With ``key`` the Idempotency-Key that created it is
    forgotten in the same transaction (the POST's answer never reached its client)."""
    reason = reason or f"on-demand request {request_id} was deleted"
    with db.write() as conn:  # the row locked (PostgreSQL): the manager cannot fill or fail it meanwhile
        row = conn.execute(_BY_REQUEST_ID.with_for_update(), {"request_id": request_id}).first()
        if row is None:
            return None
        if row.state == OD_DELETED:
            return False
        if key is not None:
            idempotency.forget(conn, key)
        request = _load(conn, [row])[0]
        changed = _finish(conn, request, OD_DELETED, None, reason, now, vm_states=WAITING + (RUNNING,),
                          expected=row.state)
    if changed:
        _log(changed)
    return True


# --- the manager's side -----------------------------------------------------------------------
_OPEN = select(ondemand_requests).where(ondemand_requests.c.state == OD_PENDING).order_by(ondemand_requests.c.id)


def open_requests(db: Database) -> list:
    """Pending requests, oldest first, with their wants and VMs (three queries)."""
    with db.read() as conn:
        return _load(conn, list(conn.execute(_OPEN)))


@writes
def add_vms(db: Database, request: Request, wanted: list, now, reserve_hours: float) -> list:
    """Record new VMs for ``request`` ((pool, name, want id) triples) before they are cloned, if it
    is still pending; the guarded touch of its row also locks it (PostgreSQL) against a
    concurrent cancel, so no VM is ever added to a finished request."""
    try:
        with db.write() as conn:
            if not _touch(conn, request.row, now):
                return []
            created = []
            for want_id in dict.fromkeys(w for _p, _n, w in wanted):
                pairs = [(pool, name) for pool, name, w in wanted if w == want_id]
                created += insert_new(conn, pairs, now, reserve_hours,
                                      reason=f"clone requested for on-demand request {request.row.request_id}",
                                      want_id=want_id)
    except exc.IntegrityError:  # a name taken meanwhile (not with SQLite): the next pass makes up for it
        return []
    log_new(created)
    return created


@writes
def hand_over(db: Database, request: Request, now, default_lifetime: float,
              owner_lifetime: Optional[float]) -> bool:
    """Every want has its VMs ready: they become the requester's (running, with the lifetime a
    checkout gets) and the request ready, in one transaction; False (nothing changed) when any
    of them left ``ready`` meanwhile."""
    owner = request.owner
    reason = f"handed over for on-demand request {request.row.request_id}" + (f" to {owner.user}" if owner else "")
    moved = []
    try:
        with db.write() as conn:
            if not _set_state(conn, request.row, OD_READY, None, now):
                return False
            for want in request.wants:
                for vm in request.vms_of(want, (READY,))[:want.count]:
                    if not change(conn, vm, RUNNING, reason, now,
                                  **running_values(vm, now, default_lifetime, owner, owner_lifetime)):
                        raise Abandoned(vm.name)
                    moved.append(vm)
            handed = {vm.id for vm in moved}
            extra = [vm for vm in request.vms if vm.state in WAITING and vm.id not in handed]
            completed = _complete(conn, extra, "not needed: its on-demand request is filled", now)
    except Abandoned:
        return False
    for vm in moved:
        log_change(vm, RUNNING, reason)
    _log(completed)
    return True


@writes
def fail(db: Database, request: Request, failure: str, now) -> bool:
    """The request cannot be filled: failed (``failure`` says why), its VMs completed."""
    with db.write() as conn:
        changed = _finish(conn, request, OD_FAILED, failure,
                          f"on-demand request {request.row.request_id} failed", now)
    if changed is None:
        return False
    _log(changed)
    return True


@writes
def clone_given_up(db: Database, vm, error: str, attempts: int, now,
                   dead_letter_class: Optional[str] = None) -> bool:
    """A clone for a request failed for good (a permanent error, or its ``attempts`` used up):
    the VM is completed, its failure goes to the dead-letter queue (with ``dead_letter_class``, the
    error's class name, when given) and its request fails, at once, in one transaction."""
    reason = f"clone failed {attempts} times, giving up: {error}"
    with db.write() as conn:
        if not change(conn, vm, COMPLETED, reason, now, clone_attempts=attempts, last_error=error,
                      completed_at=now, next_attempt_at=None):
            return False
        if dead_letter_class is not None:
            dead_letters.add(conn, vm, DeadLetter(DeadLetterQueue.CLONE, dead_letter_class, error, attempts), now)
        request = _request_of(conn, vm)
        changed = None
        if request is not None and request.row.state == OD_PENDING:
            changed = _finish(conn, request, OD_FAILED, f"The request failed to provision instances: {error}",
                              f"on-demand request {request.row.request_id} failed", now)
    log_change(vm, COMPLETED, reason)
    _log(changed)
    return True


_STRAYS = (select(vms).join(ondemand_wants, ondemand_wants.c.id == vms.c.want_id)
           .join(ondemand_requests, ondemand_requests.c.id == ondemand_wants.c.request_ref)
           .where(vms.c.state.in_(WAITING), ondemand_requests.c.state != OD_PENDING))


def strays(db: Database) -> list:
    """VMs not handed over whose request is finished (one added as the request finished on a
    database that does not serialise writers): the manager completes them."""
    with db.read() as conn:
        return list(conn.execute(_STRAYS))


# --- helpers ----------------------------------------------------------------------------------
def _load(conn, rows: list) -> list:
    if not rows:
        return []
    refs = [row.id for row in rows]
    wants = list(conn.execute(select(ondemand_wants).where(ondemand_wants.c.request_ref.in_(refs))
                              .order_by(ondemand_wants.c.id)))
    held = list(conn.execute(select(vms).where(vms.c.want_id.in_([w.id for w in wants])).order_by(vms.c.id))) \
        if wants else []
    return [Request(row, [w for w in wants if w.request_ref == row.id],
                    [vm for vm in held if any(w.id == vm.want_id and w.request_ref == row.id for w in wants)])
            for row in rows]


def _request_of(conn, vm) -> Optional[Request]:
    want = conn.execute(select(ondemand_wants).where(ondemand_wants.c.id == vm.want_id)).first()
    if want is None:
        return None
    row = conn.execute(select(ondemand_requests).where(ondemand_requests.c.id == want.request_ref)).first()
    return _load(conn, [row])[0]


def _touch(conn, row, now) -> bool:
    return conn.execute(update(ondemand_requests).where(ondemand_requests.c.id == row.id,
                                                        ondemand_requests.c.state == OD_PENDING)
                        .values(state_changed_at=now)).rowcount == 1


def _set_state(conn, row, state: str, failure: Optional[str], now, expected: str = OD_PENDING) -> bool:
    """Guarded on ``expected`` (only a pending request is filled or fails)."""
    values = {"state": state, "state_changed_at": now}
    if failure is not None:
        values["failure"] = failure
    return conn.execute(update(ondemand_requests).where(ondemand_requests.c.id == row.id,
                                                        ondemand_requests.c.state == expected)
                        .values(**values)).rowcount == 1


def _finish(conn, request: Request, state: str, failure: Optional[str], reason: str, now,
            vm_states=WAITING, expected: str = OD_PENDING) -> Optional[list]:
    """Move the request from ``expected`` to ``state`` and complete its VMs in ``vm_states``:
    the completed VMs, or None when the request was no longer ``expected``."""
    if not _set_state(conn, request.row, state, failure, now, expected):
        return None
    return _complete(conn, [vm for vm in request.vms if vm.state in vm_states], reason, now)


def _complete(conn, rows: list, reason: str, now) -> list:
    """Complete each VM still in the state it was read in (one that moved on is left to the
    manager's sweep of strays); the ones completed."""
    done = []
    for vm in rows:
        if change(conn, vm, COMPLETED, reason, now, completed_at=now, expires_at=None, next_attempt_at=None):
            done.append((vm, reason))
    return done


def _log(changed) -> None:
    for vm, reason in changed or ():
        log_change(vm, COMPLETED, reason)
