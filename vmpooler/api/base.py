"""What every route shares: JSON answers and errors, the body limit, hostnames and authentication.

Any error reaches the client as JSON ``{"ok": false, ...}`` with a 4xx status (503 when the
database cannot serve); no traceback or HTML ever does. Handlers raise ``ApiError``.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
import logging
import re
from typing import Optional

import tornado.web
from tornado.ioloop import IOLoop

from vmpooler.api.ratelimit import AuthFailureLimiter
from vmpooler.auth.tokens import token_hash
from vmpooler.context import Context
from vmpooler.db import tokens as token_store
from vmpooler.db.database import StoreUnavailable, utcnow

log = logging.getLogger("vmpooler.api")

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Basic realm="Authentication required"'}
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_HOSTNAME = 64  # the length of vms.name
_TOKEN_IN_PATH = re.compile(r"(/token/[^/?#]{0,8})[^/?#]*")
_MESSAGES = {400: "bad request", 401: "authentication required", 403: "forbidden", 405: "method not allowed",
             413: "request body too large", 429: "too many requests", 503: "service unavailable"}


class ApiError(Exception):
    """Answer ``status`` with ``{"ok": false, "error": error, **fields}`` (no "error" when None)."""

    def __init__(self, status: int, error: Optional[str] = None, headers: Optional[dict] = None, **fields):
        super().__init__(error or str(status))
        self.status, self.error, self.headers, self.fields = status, error, headers or {}, fields


@dataclasses.dataclass
class ApiState:
    """What the handlers of one application share."""

    context: Context
    limiter: AuthFailureLimiter
    status_cache: dict = dataclasses.field(default_factory=dict)


def ruby_time(when: datetime.datetime) -> str:
    """Ruby's Time#to_s, as the original shows token and lastBoot times (we are always UTC)."""
    return when.strftime("%Y-%m-%d %H:%M:%S +0000")


def rfc3339(when: datetime.datetime) -> str:
    return when.replace(tzinfo=datetime.timezone.utc).isoformat(timespec="seconds")


def shown(value, limit: int = 40) -> str:
    """A client's value, quoted and cut short, for error messages."""
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def whole_number(value, max_digits: int = 9) -> Optional[int]:
    """An integer from JSON: 3, 3.0 or "3" (the original's strings); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 10 ** max_digits:
        return int(value)
    if isinstance(value, str) and re.fullmatch(rf"\s*[+-]?\d{{1,{max_digits}}}\s*", value):
        return int(value)
    return None


#: answers up to this size are indented for people reading curl's output, as the original's are;
#: larger ones (a year of /summary) are sent compact: indenting megabytes costs more than the query
PRETTY_LIMIT = 64 * 1024


def encode(body) -> str:
    text = json.dumps(body)
    return (json.dumps(body, indent=2) if len(text) <= PRETTY_LIMIT else text) + "\n"


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def _basic_credentials(header: str):
    """(user, password) of an ``Authorization: Basic`` header, or None when malformed."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


class BaseHandler(tornado.web.RequestHandler):
    @property
    def state(self) -> ApiState:
        return self.application.settings["vmpooler"]

    @property
    def context(self) -> Context:
        return self.state.context

    @property
    def db(self):
        """The database; every call goes through ``await self.db.run(function, ...)``."""
        return self.state.context.db

    @property
    def config(self):
        return self.context.config

    def setting(self, key: str):
        return self.config.settings[key]

    # --- answers ----------------------------------------------------------------------------
    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")

    def prepare(self) -> None:
        if len(self.request.body or b"") > self.setting("max_body_size"):
            raise ApiError(413, f"the request body is larger than {self.setting('max_body_size')} bytes")

    def head(self, *args, **kwargs):
        return self.get(*args, **kwargs)

    def reply(self, body, status: int = 200) -> None:
        self.set_status(status)
        self.finish(encode(body))

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        body = {"ok": False}
        if isinstance(error, ApiError):
            status_code = error.status
            for name, value in error.headers.items():
                self.set_header(name, value)
            body.update({"error": error.error} if error.error else {}, **error.fields)
        elif isinstance(error, StoreUnavailable):
            status_code = 503
            body["error"] = f"the database cannot serve requests now: {error}"
        elif status_code >= 500:
            body["error"] = "internal error"
        elif status_code in _MESSAGES:
            body["error"] = _MESSAGES[status_code]
        if status_code == 401:
            self.set_header(*next(iter(WWW_AUTHENTICATE.items())))
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(encode(body))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, (ApiError, tornado.web.HTTPError)):
            return
        if isinstance(value, StoreUnavailable):
            log.warning("%s: database unavailable: %s", self._request_summary(), value)
            return
        log.error("uncaught exception in %s", self._request_summary(), exc_info=(typ, value, tb))

    def _request_summary(self) -> str:
        return f"{self.request.method} {redact(self.request.uri)} ({self.request.remote_ip})"

    # --- input ------------------------------------------------------------------------------
    def json_body(self) -> dict:
        """The body as a JSON object, or a 400 saying what is wrong with it."""
        raw = self.request.body or b""
        if not raw.strip():
            raise ApiError(400, "the request body must be a JSON object, and it is empty")
        try:
            data = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        try:  # JSON's \ud800 escapes decode to lone surrogates, which no database can store
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "the request body holds text that is not valid Unicode (a lone surrogate)") from None
        return data

    def hostname(self, raw: str) -> str:
        """A VM name from the path; ``<name>.<domain>`` is shortened to ``<name>``."""
        domain = self.config.domain
        if domain and raw.endswith("." + domain) and re.fullmatch(r"[A-Za-z0-9_-]+", raw[:-len(domain) - 1]):
            raw = raw[:-len(domain) - 1]
        if len(raw) > MAX_HOSTNAME:
            raise ApiError(400, f"the hostname is longer than {MAX_HOSTNAME} characters")
        if not _HOSTNAME.fullmatch(raw):
            raise ApiError(400, f"invalid hostname {shown(raw)}")
        return raw

    # --- authentication ---------------------------------------------------------------------
    def guard_rate(self) -> None:
        """429 while this client is blocked for failing to authenticate too often."""
        wait = self.state.limiter.retry_after(self.request.remote_ip or "")
        if wait is not None:
            raise ApiError(429, "too many failed authentications from this address; try again later",
                           headers={"Retry-After": str(wait)}, retry_after=wait)

    def auth_failed(self, error: str, status: int = 401):
        self.state.limiter.failed(self.request.remote_ip or "")
        raise ApiError(status, error)

    async def token(self, required: bool):
        """The token row named by X-AUTH-TOKEN (its use recorded); None when there is no header
        and none is ``required``. 401 for a missing (when required) or unknown token."""
        value = self.request.headers.get("X-AUTH-TOKEN")
        if value is None:
            if required:
                raise ApiError(401, "this request needs a token in the X-AUTH-TOKEN header")
            return None
        self.guard_rate()
        row = await self.db.run(token_store.by_hash, token_hash(value.strip()))
        if row is None:
            self.auth_failed("the token in X-AUTH-TOKEN is not valid")
        await self.db.run(token_store.touch, row.token_hash, utcnow())
        return row

    async def authorize_vm(self, vm, token_needed: bool, row=None) -> None:
        """A VM checked out with a token may be changed with that token only (403 for another);
        otherwise a token is needed when ``token_needed``. ``row``: a token already checked."""
        if row is None and (token_needed or vm.token_hash is not None):
            row = await self.token(required=True)
        if vm.token_hash is not None and row.token_hash != vm.token_hash:
            raise ApiError(403, f"{vm.name} was checked out with another token; only that token may change it")

    async def basic_user(self) -> str:
        """The user of valid HTTP Basic credentials (checked off the IOLoop), else 401."""
        header = self.request.headers.get("Authorization")
        if not header:
            raise ApiError(401, "this request needs HTTP basic authentication")
        self.guard_rate()
        credentials = _basic_credentials(header)
        valid = credentials is not None and await IOLoop.current().run_in_executor(
            self.context.executor, self.context.auth.authenticate, *credentials)
        if not valid:
            self.auth_failed("the user name or password is not valid")
        return credentials[0]


class NotFoundHandler(BaseHandler):
    """Every path no route matches: 404 ``{"ok": false}``, whatever the method."""

    def prepare(self) -> None:
        raise ApiError(404)

    def write_error(self, status_code: int, **kwargs) -> None:
        super().write_error(404)  # also for methods Tornado does not know (405 elsewhere)


def redact(uri: str) -> str:
    """The URI with any token in it cut to its first 8 characters, for logs."""
    return _TOKEN_IN_PATH.sub(r"\1...", uri)
