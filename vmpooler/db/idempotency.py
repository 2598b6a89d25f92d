"""Idempotency-Key (the IETF httpapi draft header) on the requests that take VMs.

The answer a key got is written in the same transaction that took the VMs (``remember``), so a
retry with the key finds either nothing (the first attempt took nothing: it runs afresh) or the
first attempt's answer (``check`` raises ``Replay``: nothing more is taken). Keys are unique per
scope (the token's hash, "" without a token): of two requests racing with one key, one commits
its row and the other's INSERT fails, rolling back what it took (``KeyInFlight``). A key used for
another request (method, path or body) is refused (``KeyReused``). Rows are kept until
``expires_at``; the manager purges the expired ones.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from sqlalchemy import bindparam, delete, insert, select

from vmpooler.db.database import Database, writes
from vmpooler.db.models import idempotency_keys


@dataclasses.dataclass(frozen=True)
class Key:
    scope: str  # the token's hash, or "" for a request without a token
    key: str
    fingerprint: str  # sha256 of the request's method, path and body
    kept: datetime.timedelta


class Replay(Exception):
    """The key answered the same request before: its status and answer (as remembered)."""

    def __init__(self, status: int, answer):
        super().__init__(status)
        self.status, self.answer = status, answer


class KeyReused(Exception):
    """The key was used for another request (a different method, path or body)."""


class KeyInFlight(Exception):
    """Another request with the key committed first while this one ran (nothing was taken)."""


_ROW: Any = (bindparam("scope"), bindparam("key"))
_FIND = select(idempotency_keys).where(idempotency_keys.c.scope == _ROW[0], idempotency_keys.c.key == _ROW[1])
_FORGET = delete(idempotency_keys).where(idempotency_keys.c.scope == _ROW[0], idempotency_keys.c.key == _ROW[1])


def check(conn, key: Key, now) -> None:
    """Inside the taking transaction, before it takes anything: raise Replay or KeyReused when the
    key is known and not expired (an expired row is removed: the key starts afresh)."""
    row = conn.execute(_FIND, {"scope": key.scope, "key": key.key}).first()
    _answer(row, key, now)
    if row is not None:
        forget(conn, key)


def _answer(row, key: Key, now) -> None:
    """Raise Replay or KeyReused for a row of the key that has not expired."""
    if row is None or row.expires_at <= now:
        return
    if row.fingerprint != key.fingerprint:
        raise KeyReused(key.key)
    raise Replay(row.status, json.loads(row.answer))


def remember(conn, key: Key, status: int, answer, now) -> None:
    """Inside the taking transaction, after it took what it answers: the key's answer. An
    IntegrityError here means another request with the key committed first."""
    conn.execute(insert(idempotency_keys).values(
        scope=key.scope, key=key.key, fingerprint=key.fingerprint, status=status, answer=json.dumps(answer),
        created_at=now, expires_at=now + key.kept))


def is_conflict(error) -> bool:
    """Is this IntegrityError another request's row for the same key (SQLite and PostgreSQL both
    name the table in the message)?"""
    return "idempotency_keys" in str(getattr(error, "orig", error))


def forget(conn, key: Key) -> None:
    """Inside the transaction that undoes what the key's request took (its answer never arrived)."""
    conn.execute(_FORGET, {"scope": key.scope, "key": key.key})


def lookup(db: Database, key: Key, now) -> None:
    """Raise Replay or KeyReused as ``check`` does; return when the key is unknown (or expired)."""
    with db.read() as conn:
        _answer(conn.execute(_FIND, {"scope": key.scope, "key": key.key}).first(), key, now)


@writes
def purge(db: Database, now) -> int:
    """Remove the expired keys (the manager, now and then); how many."""
    with db.write(invalidates=False) as conn:
        return conn.execute(delete(idempotency_keys).where(idempotency_keys.c.expires_at <= now)).rowcount
