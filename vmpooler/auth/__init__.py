"""Authentication stores (who may create tokens) and the token helpers.

A store answers one question, ``authenticate(user, password) -> bool``. It may block (bcrypt is
slow on purpose; LDAP asks a directory), so the API calls it through ``context.executor``, never on
the IOLoop. A store whose backend cannot be asked raises ``AuthUnavailable`` (the API answers 503).
"""
from __future__ import annotations

from typing import Mapping, Optional

import bcrypt

from vmpooler.auth.base import AuthStore, AuthUnavailable
from vmpooler.auth.tokens import PREFIX_LENGTH, TOKEN_LENGTH, generate_token, random_name, token_hash

__all__ = ["AuthStore", "AuthUnavailable", "UsersStore", "DummyStore", "build_auth_store", "hash_password",
           "generate_token", "random_name", "token_hash", "TOKEN_LENGTH", "PREFIX_LENGTH"]

# bcrypt only reads 72 bytes; longer passwords are refused rather than silently truncated.
MAX_PASSWORD_BYTES = 72


class UsersStore(AuthStore):
    """``:auth: {provider: users, users: {jdoe: '<bcrypt hash>'}}``."""

    def __init__(self, users: Mapping[str, str]):
        self.users = {str(user): str(digest).encode("ascii", "replace") for user, digest in users.items()}
        # Checked against when the user is unknown, so that the answer takes as long as for a known
        # user (a configured hash has the configured cost).
        self._decoy = next(iter(self.users.values()), None) or bcrypt.hashpw(b"decoy", bcrypt.gensalt(4))

    def authenticate(self, user: str, password: str) -> bool:
        secret = password.encode("utf-8", "replace")
        if not user or not password or len(secret) > MAX_PASSWORD_BYTES:
            return False
        digest = self.users.get(user)
        try:
            return bcrypt.checkpw(secret, digest or self._decoy) and digest is not None
        except ValueError:  # a malformed hash in the configuration
            return False


class DummyStore(AuthStore):
    """The original's test store: any password that differs from the user name. Only allowed
    with VMPOOLER_DEBUG (config.py refuses it otherwise)."""

    def authenticate(self, user: str, password: str) -> bool:
        return bool(user) and bool(password) and user != password


def build_auth_store(config) -> Optional[AuthStore]:
    """The store the configuration's ``:auth:`` section asks for; None when there is none."""
    auth = config.auth
    if not auth:
        return None
    if auth.get("provider") == "dummy":
        return DummyStore()
    if auth.get("provider") == "ldap":
        from vmpooler.auth.ldap import LdapStore  # ldap3 is loaded only when a directory is configured

        return LdapStore(auth["ldap"])
    return UsersStore(auth.get("users") or {})


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash for the ``users`` store (``vmpooler passwd``)."""
    secret = password.encode("utf-8")
    if not secret or len(secret) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password must be 1 to {MAX_PASSWORD_BYTES} bytes long")
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds)).decode("ascii")
