"""Tokens: one row per token, stored as its SHA-256 hash and its first characters (the prefix,
for listing). Generating and hashing tokens is auth/'s business; this module only stores them.
Every function takes the ``Database`` and runs one transaction."""
from __future__ import annotations

from typing import Optional

from sqlalchemy import bindparam, delete, insert, select, update

from vmpooler.db import shared
from vmpooler.db.database import Database, writes
from vmpooler.db.models import tokens, vms
from vmpooler.model import RUNNING

# Built once: a token is looked up and touched on every authenticated request.
_BY_HASH = select(tokens).where(tokens.c.token_hash == bindparam("digest"))
_TOUCH = update(tokens).where(tokens.c.token_hash == bindparam("digest"))
_INSERT = insert(tokens)
_DELETE = delete(tokens).where(tokens.c.id == bindparam("token_id"))
_RUNNING_VMS = (select(vms.c.name).where(vms.c.token_hash == bindparam("digest"), vms.c.state == RUNNING)
                .order_by(vms.c.checkout_at, vms.c.id))


@writes
def create(db: Database, user: str, digest: str, prefix: str, now) -> int:
    """Store a new token of ``user`` by its hash and prefix; returns the row's id."""
    with db.write() as conn:
        return conn.execute(_INSERT, {"token_hash": digest, "prefix": prefix, "user": user,
                                      "created_at": now}).inserted_primary_key[0]  # type: ignore[index]


@writes
def touch(db: Database, digest: str, now) -> None:
    """Record a use of the token (its ``last`` time). Every request of a token's holder changes
    its row: noted and changed at the commit, once per batch, in the one order of db/shared.py
    (parallel batches touching two tokens in opposite orders would deadlock)."""
    with db.write() as conn:
        shared.defer(conn, ("tokens", digest), now, _set_last_used)


def _set_last_used(conn, key: tuple, times: list) -> None:
    conn.execute(_TOUCH, {"last_used_at": max(times), "digest": key[1]})


@writes
def remove(db: Database, token_id: int) -> bool:
    with db.write() as conn:
        return conn.execute(_DELETE, {"token_id": token_id}).rowcount == 1


def by_hash(db: Database, digest: str):
    """The token's row, or None."""
    with db.read() as conn:
        return conn.execute(_BY_HASH, {"digest": digest}).first()


def of_user(db: Database, user: str, prefix: Optional[str] = None) -> list:
    """The tokens of ``user`` (those starting with ``prefix``), oldest first."""
    query = select(tokens).where(tokens.c.user == user).order_by(tokens.c.id)
    if prefix is not None:
        query = query.where(tokens.c.prefix == prefix)
    with db.read() as conn:
        return list(conn.execute(query))


def running_vms(db: Database, digest: str) -> list:
    """Names of the running VMs checked out with the token, oldest checkout first."""
    with db.read() as conn:
        return [row.name for row in conn.execute(_RUNNING_VMS, {"digest": digest})]
