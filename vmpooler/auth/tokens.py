"""Tokens: random names and their hashes (db/tokens.py stores them).

A token is stored only as its SHA-256 hash plus its first 8 characters (the prefix, for
listing). The full token is known to its owner alone: it is shown once, when created.
"""
from __future__ import annotations

import hashlib
import secrets

from vmpooler.db import tokens as token_store
from vmpooler.db.database import writes

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


@writes
def issue(db, user: str, now) -> str:
    """A new token for ``user``, stored by its hash (db/tokens.py); returns the token: the only
    time it is known in full."""
    token = generate_token()
    token_store.create(db, user, token_hash(token), token[:PREFIX_LENGTH], now)
    return token


__all__ = ["random_name", "generate_token", "token_hash", "issue", "TOKEN_LENGTH", "PREFIX_LENGTH"]
