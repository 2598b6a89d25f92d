"""Pool configuration changed at run time: overrides of size, template and clone target, drain
requests, and their audit trail (``pool_events``).

``effective_pools`` is the one answer to "what is this pool's configuration now": the
configuration file with the overrides applied. The manager, /status, /poolstat and GET /config
all ask it, so they agree. Each change is one transaction with its event; a new template or clone
target requests a drain in the same transaction, so a crash cannot separate the two.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Iterable, Optional

from sqlalchemy import bindparam, delete, insert, select

from vmpooler.db.database import Database, upsert, writes
from vmpooler.db.models import pool_drains, pool_events, pool_overrides, vms
from vmpooler.db.events import change, log_change
from vmpooler.model import COMPLETED, PENDING, READY

log = logging.getLogger("vmpooler.state")

SIZE, TEMPLATE, CLONE_TARGET = "size", "template", "clone_target"
#: settings whose change drains the pool: its VMs were made from the old one
DRAINING = (TEMPLATE, CLONE_TARGET)

_OVERRIDES = select(pool_overrides.c.pool, pool_overrides.c.setting, pool_overrides.c.value)
_DRAINS = select(pool_drains)
_DRAINABLE = (select(vms).where(vms.c.pool == bindparam("pool_name"), vms.c.state.in_((PENDING, READY)))
              .order_by(vms.c.id))


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who asked for a change: the token's user (None without auth) and the client's address."""

    user: Optional[str] = None
    address: Optional[str] = None

    def __str__(self) -> str:
        return self.user or self.address or "anonymous"


# --- reads ----------------------------------------------------------------------------------
def _decode(setting: str, text: str):
    return int(text) if setting == SIZE else text


def _load_overrides(conn) -> dict:
    result: dict = {}
    for pool, setting, value in conn.execute(_OVERRIDES):
        result.setdefault(pool, {})[setting] = _decode(setting, value)
    return result


def overrides(db: Database) -> dict:
    """{pool: {setting: value}} of every override."""
    with db.read() as conn:
        return _load_overrides(conn)


def _fields(value) -> set:
    return {field.name for field in dataclasses.fields(value)} if dataclasses.is_dataclass(value) else set()


def apply(pool, changes: dict):
    """``pool`` (a model.PoolConfig) with ``changes`` applied: to its own fields (size, template),
    to its provider's typed pool options where they have the key (vSphere's clone_target), and to
    ``raw``, the mapping as written that GET /config shows."""
    if not changes:
        return pool
    own = {key: value for key, value in changes.items() if key in _fields(pool)}
    options = pool.provider_options
    theirs = {key: value for key, value in changes.items() if key not in own and key in _fields(options)}
    if theirs:
        options = dataclasses.replace(options, **theirs)
    return dataclasses.replace(pool, provider_options=options, raw={**pool.raw, **changes}, **own)


def effective_pools(db: Database, pools: Iterable) -> list:
    """The configured ``pools`` with their overrides applied, in configuration order."""
    found = overrides(db)
    return [apply(pool, found.get(pool.name, {})) for pool in pools]


def pending_drains(db: Database) -> dict:
    """{pool: drain request row} of the drains the manager has not carried out yet."""
    with db.read() as conn:
        return {row.pool: row for row in conn.execute(_DRAINS)}


def events(db: Database, pool: Optional[str] = None) -> list:
    query = select(pool_events).order_by(pool_events.c.id)
    if pool is not None:
        query = query.where(pool_events.c.pool == pool)
    with db.read() as conn:
        return list(conn.execute(query))


# --- writes ---------------------------------------------------------------------------------
def _remove(conn, pool: str, setting: str) -> None:
    conn.execute(delete(pool_overrides).where(pool_overrides.c.pool == pool, pool_overrides.c.setting == setting))


def _record(conn, pool: str, action: str, before, after, actor: Actor, now) -> None:
    conn.execute(insert(pool_events).values(
        pool=pool, at=now, action=action, before=None if before is None else str(before),
        after=None if after is None else str(after), user=actor.user, address=actor.address))


def _request_drain(conn, pool: str, reason: str, now) -> None:
    """Ask for a drain; a request still pending is replaced (one drain serves both)."""
    upsert(conn, pool_drains, ("pool",), pool=pool, reason=reason, requested_at=now)


def _store(conn, pool, setting: str, value, actor: Actor, now) -> None:
    """Set one override (removed when ``value`` is the configuration file's again)."""
    if value == effective_value(pool, {}, setting):
        _remove(conn, pool.name, setting)
    else:
        upsert(conn, pool_overrides, ("pool", "setting"), pool=pool.name, setting=setting, value=str(value),
               user=actor.user, changed_at=now)


@writes
def change_setting(db: Database, configured: dict, setting: str, values: dict, actor: Actor, now) -> list:
    """Set ``setting`` of each pool in ``values`` ({pool name: new value}), ``configured`` being
    {pool name: pool as the file configures it}, in ONE transaction. Returns the names of the
    pools whose effective value changed (the others are left alone and not recorded)."""
    changed = []
    with db.write() as conn:
        current = _load_overrides(conn)
        for name, value in values.items():
            pool = configured[name]
            before = effective_value(pool, current.get(name, {}), setting)
            if before == value:
                continue
            _store(conn, pool, setting, value, actor, now)
            _record(conn, name, f"set {setting}", before, value, actor, now)
            if setting in DRAINING:
                _request_drain(conn, name, f"{setting} changed from {before} to {value}", now)
            changed.append(name)
    for name in changed:
        log.info("[%s] %s set to %s by %s", name, setting, values[name], actor)
    return changed


def effective_value(pool, found: dict, setting: str):
    """The value of ``setting`` for ``pool`` given its overrides ``found``; else the pool's own
    field, else its provider's pool option, else the key as written."""
    if setting in found:
        return found[setting]
    for holder in (pool, pool.provider_options):
        if setting in _fields(holder):
            return getattr(holder, setting)
    return pool.raw.get(setting)


@writes
def undo(db: Database, pool, setting: str, actor: Actor, now) -> tuple:
    """Remove the override of ``setting``: (value before, configured value, whether it changed).
    Undoing a template override drains the pool, as setting one does."""
    configured = effective_value(pool, {}, setting)
    with db.write() as conn:
        before = effective_value(pool, _load_overrides(conn).get(pool.name, {}), setting)
        _remove(conn, pool.name, setting)
        changed = before != configured
        if changed:
            _record(conn, pool.name, f"undo {setting}", before, configured, actor, now)
            if setting in DRAINING:
                _request_drain(conn, pool.name, f"{setting} restored from {before} to {configured}", now)
    if changed:
        log.info("[%s] %s restored to %s by %s", pool.name, setting, configured, actor)
    return before, configured, changed


@writes
def request_reset(db: Database, pool_names: list, actor: Actor, now) -> None:
    """POST /poolreset: the manager drains each pool and refills it."""
    with db.write() as conn:
        for name in pool_names:
            _request_drain(conn, name, "pool reset", now)
            _record(conn, name, "reset", None, None, actor, now)
    log.info("reset of %s requested by %s", ", ".join(pool_names), actor)


@writes
def drain(db: Database, pool: str, request, now) -> Optional[int]:
    """Carry out a drain ``request`` (a row of ``pending_drains``): every ready and pending VM of
    the pool is completed (the destroy loop removes it; replenishment refills the pool from its
    configuration now), each with its event, and the request is closed, in ONE transaction. None
    when the request was replaced meanwhile (the next pass carries out the newer one)."""
    reason = f"drained: {request.reason}"
    with db.write() as conn:
        closed = conn.execute(delete(pool_drains).where(pool_drains.c.pool == pool,
                                                        pool_drains.c.requested_at == request.requested_at))
        if closed.rowcount != 1:
            return None
        moved = [vm for vm in conn.execute(_DRAINABLE, {"pool_name": pool})
                 if change(conn, vm, COMPLETED, reason, now, completed_at=now, expires_at=None, next_attempt_at=None)]
        _record(conn, pool, "drain", request.reason, f"{len(moved)} VMs completed", Actor("manager"), now)
    for vm in moved:
        log_change(vm, COMPLETED, reason)
    log.info("[%s] %s: %d ready and pending VMs completed", pool, reason, len(moved))
    return len(moved)
