"""Tokens: random names, their hashes, and the writes to the ``tokens`` table.

A token is stored only as its SHA-256 hash plus its first 8 characters (the prefix, for
listing). The full token is known to its owner alone: it is shown once, when created.
"""
from __future__ import annotations

import hashlib
import secrets
from sqlalchemy import delete, insert, update

from vmpooler.db.database import Database
from vmpooler.db.models import tokens

TOKEN_LENGTH = 32
PREFIX_LENGTH = 8
_FIRST = "abcdefghijklmnopqrstuvwxy"
_REST = "abcdefghijklmnopqrstuvwxyz0123456789"


def random_name(length: int = TOKEN_LENGTH) -> str:
    """The original's generator for tokens and snapshot names: a letter a-y, then [a-z0-9]."""
    return secrets.choice(_FIRST) + "".join(secrets.choice(_REST) for _ in range(length - 1))


def generate_token() -> str:
    return random_name(TOKEN_LENGTH)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create(db: Database, user: str, now) -> str:
    """A new token for ``user``; returns the token (the only time it is known in full)."""
    token = generate_token()
    with db.write() as conn:
        conn.execute(insert(tokens).values(token_hash=token_hash(token), prefix=token[:PREFIX_LENGTH], user=user,
                                           created_at=now))
    return token


def touch(db: Database, digest: str, now) -> None:
    """Record a use of the token (its ``last`` time)."""
    with db.write() as conn:
        conn.execute(update(tokens).where(tokens.c.token_hash == digest).values(last_used_at=now))


def remove(db: Database, token_id: int) -> bool:
    with db.write() as conn:
        return conn.execute(delete(tokens).where(tokens.c.id == token_id)).rowcount == 1


__all__ = ["random_name", "generate_token", "token_hash", "create", "touch", "remove", "TOKEN_LENGTH",
           "PREFIX_LENGTH"]
