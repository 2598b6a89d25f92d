"""Who is asking: HTTP Basic credentials, X-AUTH-TOKEN tokens, who may change a VM, and the
limits on failed attempts.

Failures are limited by what a guesser could gain. Many clients share one address (CI runners
behind a NAT, one build host), so no limit refuses a client for what another client did:

* A password is guessable: failures are counted per (client address, user name). After
  ``auth_failures_per_minute`` of them in a sliding minute every Basic attempt for that user
  from that address is 429, the right password too (else the answer would tell a guesser which
  guess was right), until the oldest failure is a minute old. Other users are not affected.
* A token is 32 random characters (about 165 bits): guessing one is hopeless. A wrong token is
  401, counted per address against a coarse guard (``auth_token_failures_per_minute``, far above
  normal use); past it wrong tokens are answered 429 with Retry-After, so a runaway script is told
  to back off. A valid token is never refused.
"""
from __future__ import annotations

import base64
import binascii
import collections
import datetime
import logging
import math
import time
from typing import Any, Callable, NoReturn, Optional

from tornado.httputil import HTTPServerRequest
from tornado.ioloop import IOLoop

from vmpooler.api.errors import ApiError
from vmpooler.auth import AuthUnavailable
from vmpooler.auth.tokens import token_hash
from vmpooler.context import Context
from vmpooler.db import tokens as token_store
from vmpooler.db.database import utcnow

log = logging.getLogger("vmpooler.api")

#: a token's ``last`` time is written at most once per this interval: a CI system using one token
#: for every request costs one write a minute, not one per request
LAST_USED_RESOLUTION = datetime.timedelta(seconds=60)


class FailureWindow:
    """Failures per key (an address, or an address and a user name) over a sliding window, in
    memory: a key with ``limit`` failures within ``window`` seconds is blocked until the oldest
    of them leaves the window."""

    #: above this many keys, those whose failures all left the window are forgotten (and, if that
    #: frees nothing, the oldest keys), so a flood of new keys cannot grow memory without bound
    SWEEP_AT = 10000

    def __init__(self, limit: int, window: float = 60.0, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.enabled, self.clock = limit, window, enabled, clock
        self._failures: dict = {}  # key -> the newest ``limit`` failure times (only those matter)

    def retry_after(self, key) -> Optional[int]:
        """Seconds the key must wait, or None when it may try now."""
        failures = self._failures.get(key)
        if not self.enabled or failures is None or len(failures) < self.limit:
            return None
        wait = failures[0] + self.window - self.clock()
        return math.ceil(wait) if wait > 0 else None

    def failed(self, key) -> None:
        if not self.enabled:
            return
        if key not in self._failures and len(self._failures) >= self.SWEEP_AT:
            self._sweep()
        self._failures.setdefault(key, collections.deque(maxlen=self.limit)).append(self.clock())

    def _sweep(self) -> None:
        horizon = self.clock() - self.window
        for key in [k for k, f in self._failures.items() if f[-1] <= horizon]:
            del self._failures[key]
        while len(self._failures) >= self.SWEEP_AT:
            del self._failures[next(iter(self._failures))]


def basic_credentials(header: str):
    """(user, password) of an ``Authorization: Basic`` header, or None when malformed."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


def _blocked(wait: int, error: str) -> ApiError:
    return ApiError(429, error, headers={"Retry-After": str(wait)}, retry_after=wait)


class Credentials:
    """Checks the credentials of requests for the handlers of one application."""

    def __init__(self, context: Context, passwords: FailureWindow, wrong_tokens: FailureWindow):
        self.context, self.passwords, self.wrong_tokens = context, passwords, wrong_tokens

    @classmethod
    def for_context(cls, context: Context) -> "Credentials":
        settings = context.config.settings
        enabled = settings.auth_failure_limits_enabled
        return cls(context, FailureWindow(settings.auth_failures_per_minute, enabled=enabled),
                   FailureWindow(settings.auth_token_failures_per_minute, enabled=enabled))

    # --- tokens -----------------------------------------------------------------------------
    async def known_token(self, request: Any):  # an HTTPServerRequest, carrying this request's memo
        """The token row X-AUTH-TOKEN names, or None (no header, or an unknown token); looked up
        once per request (the rate limiter and the handler both ask)."""
        memo: Any = request  # the answer is kept on the request itself
        if not hasattr(memo, "vmpooler_token"):
            value = request.headers.get("X-AUTH-TOKEN")
            memo.vmpooler_token = None if value is None else await self.context.db.run(
                token_store.by_hash, token_hash(value.strip()))
        return memo.vmpooler_token

    async def token(self, request: HTTPServerRequest, required: bool):
        """The token row named by X-AUTH-TOKEN (its use recorded); None when there is no header
        and none is ``required``. 401 for a missing (when required) or unknown token."""
        if request.headers.get("X-AUTH-TOKEN") is None:
            if required:
                raise ApiError(401, "this request needs a token in the X-AUTH-TOKEN header")
            return None
        row = await self.known_token(request)
        if row is None:
            self.wrong_token(request, "the token in X-AUTH-TOKEN is not valid")
        await self._record_use(row)
        return row

    async def token_if_configured(self, request: HTTPServerRequest, required: bool):
        """``token()`` with an auth store; without one the header is ignored (as the original)."""
        return await self.token(request, required) if self.context.auth is not None else None

    def wrong_token(self, request: HTTPServerRequest, error: str, status: int = 401) -> NoReturn:
        """Answer an unknown token: ``status``, or 429 once the address is past the coarse guard."""
        address = request.remote_ip or ""
        wait = self.wrong_tokens.retry_after(address)
        if wait is not None:
            raise _blocked(wait, "too many wrong tokens from this address; try again later")
        self.wrong_tokens.failed(address)
        if self.wrong_tokens.retry_after(address) is not None:
            log.warning("%s sent %d wrong tokens within a minute; further wrong tokens are answered 429",
                        address, self.wrong_tokens.limit)
        raise ApiError(status, error)

    async def _record_use(self, row) -> None:
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            await self.context.db.run(token_store.touch, row.token_hash, now)

    async def authorize_vm(self, request: HTTPServerRequest, vm, token_needed: bool, row=None) -> None:
        """A VM checked out with a token may be changed with that token only (403 for another);
        otherwise a token is needed when ``token_needed``. ``row``: a token already checked."""
        if row is None and (token_needed or vm.token_hash is not None):
            row = await self.token(request, required=True)
        if vm.token_hash is not None and row.token_hash != vm.token_hash:
            raise ApiError(403, f"{vm.name} was checked out with another token; only that token may change it")

    async def valid_credential(self, request: HTTPServerRequest) -> Optional[str]:
        """``token:<hash>`` of a known token, else ``user:<name>`` of valid Basic credentials, else
        None (none given, or not valid; no auth store): whom the request rate limits count."""
        if self.context.auth is None:
            return None
        row = await self.known_token(request)
        if row is not None:
            return "token:" + row.token_hash
        if request.headers.get("Authorization"):
            try:
                return "user:" + (await self.basic_user(request)).strip().casefold()
            except ApiError:
                return None
        return None

    # --- passwords --------------------------------------------------------------------------
    async def basic_user(self, request: Any) -> str:  # an HTTPServerRequest, carrying this request's memo
        """The user of valid HTTP Basic credentials (checked off the IOLoop), else 401; checked
        once per request (the rate limiter may have asked already)."""
        memo: Any = request  # the answer is kept on the request itself
        if not hasattr(memo, "vmpooler_basic"):
            try:
                memo.vmpooler_basic = await self._check_basic(request)
            except ApiError as error:
                memo.vmpooler_basic = error
        if isinstance(memo.vmpooler_basic, ApiError):
            raise memo.vmpooler_basic
        return memo.vmpooler_basic

    async def _check_basic(self, request: HTTPServerRequest) -> str:
        header = request.headers.get("Authorization")
        if not header:
            raise ApiError(401, "this request needs HTTP basic authentication")
        credentials = basic_credentials(header)
        if credentials is None:  # nothing was guessed, so nothing is counted
            raise ApiError(401, "the user name or password is not valid")
        # user names are compared case-blind, as a directory would, so "JDoe" is not ten more guesses
        key = (request.remote_ip or "", credentials[0].strip().casefold())
        wait = self.passwords.retry_after(key)
        if wait is not None:  # the user name is not echoed: a client may have typed a password there
            raise _blocked(wait, "too many failed logins for this user from this address; try again later")
        try:
            store = self.context.auth
            assert store is not None  # Basic credentials are read only where an auth store is configured
            valid = await IOLoop.current().run_in_executor(self.context.executor, store.authenticate, *credentials)
        except AuthUnavailable:  # the directory is down: nobody's fault, so nothing is counted
            raise ApiError(503, "the authentication directory is unavailable; try again later",
                           headers={"Retry-After": "5"}) from None
        if not valid:
            self.passwords.failed(key)
            raise ApiError(401, "the user name or password is not valid")
        return credentials[0]
