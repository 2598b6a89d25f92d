"""What every auth store is: ``authenticate(user, password) -> bool``, and the one error it may raise."""
from __future__ import annotations

import abc


class AuthUnavailable(Exception):
    """The store cannot tell now (its directory is down or does not answer): nobody is
    authenticated, and the client may try again later."""


class AuthStore(abc.ABC):
    """Checks a user's password. Blocking; never raises for bad input (answers False); raises
    AuthUnavailable when it cannot check."""

    @abc.abstractmethod
    def authenticate(self, user: str, password: str) -> bool:
        ...
