"""Leases: which process holds a role (the pool manager) when several share one database.

A lease is one row: its holder, an epoch that grows with every change of holder, and an expiry in
the database's own clock (PostgreSQL's ``now()``; the local clock on SQLite, whose processes share
one machine), so processes on machines whose clocks differ still agree on who holds it. Taking
and renewing are one guarded UPDATE each: at most one holder at a time, whatever the interleaving.
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import Optional

from sqlalchemy import and_, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from vmpooler.db.database import Database, utcnow
from vmpooler.db.models import leases


@dataclasses.dataclass(frozen=True)
class Lease:
    name: str
    holder: Optional[str]
    epoch: int
    expires_at: Optional[datetime.datetime]
    renewed_at: Optional[datetime.datetime]


def _database_now(conn) -> datetime.datetime:
    if conn.dialect.name == "postgresql":
        return conn.execute(text("SELECT now() AT TIME ZONE 'UTC'")).scalar_one()
    return utcnow()


def hold(db: Database, name: str, holder: str, seconds: float) -> Optional[int]:
    """Take the lease ``name`` for ``holder`` or renew it, for ``seconds``. Returns the epoch of this
    holding, or None when another holder's lease has not expired."""
    with db.write(invalidates=False) as conn:  # no cached read shows leases
        now = _database_now(conn)
        expires = now + datetime.timedelta(seconds=seconds)
        current = conn.execute(select(leases).where(leases.c.name == name)).first()
        if current is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(leases).values(name=name, holder=holder, epoch=1, expires_at=expires,
                                                       renewed_at=now))
                return 1
            except IntegrityError:  # another process inserted it first: it holds the lease
                return None
        if current.holder == holder and current.expires_at > now:
            epoch = current.epoch  # a renewal keeps the epoch
        else:
            epoch = current.epoch + 1
        changed = conn.execute(update(leases).where(
            leases.c.name == name, leases.c.epoch == current.epoch,
            or_(leases.c.holder == holder, leases.c.holder.is_(None), leases.c.expires_at <= now),
        ).values(holder=holder, epoch=epoch, expires_at=expires, renewed_at=now))
        return epoch if changed.rowcount == 1 else None


def release(db: Database, name: str, holder: str, epoch: int) -> bool:
    """Give the lease up at once (a clean stop), so another process need not wait for it to expire."""
    with db.write(invalidates=False) as conn:  # no cached read shows leases
        changed = conn.execute(update(leases).where(
            and_(leases.c.name == name, leases.c.holder == holder, leases.c.epoch == epoch),
        ).values(holder=None, expires_at=None))
        return changed.rowcount == 1


def current(db: Database, name: str) -> Optional[Lease]:
    """The lease as it stands, or None when nobody ever held it."""
    with db.read() as conn:
        row = conn.execute(select(leases).where(leases.c.name == name)).first()
        now = _database_now(conn)
    if row is None:
        return None
    live = row.holder is not None and row.expires_at is not None and row.expires_at > now
    return Lease(row.name, row.holder if live else None, row.epoch, row.expires_at, row.renewed_at)
