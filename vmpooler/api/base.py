"""The handler every route shares: JSON answers, errors as JSON, the JSON body, hostnames.

Any error reaches the client as JSON ``{"ok": false, ...}`` with a 4xx status (503 when the
database cannot serve); no traceback or HTML ever does. Handlers raise ``ApiError``. Bodies over
``max_body_size`` never reach a handler (``bodylimit``); credentials are checked by ``auth``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
from typing import Any, Dict, Optional

import tornado.web

from vmpooler.api import validation
from vmpooler.api.auth import Credentials
from vmpooler.api.errors import MESSAGES, ApiError
from vmpooler.api.ratelimit import RateLimiter, classify, client_of
from vmpooler.api.render import encode, shown
from vmpooler.api.version import ApiVersion
from vmpooler.context import Context
from vmpooler.db.database import StoreUnavailable

log = logging.getLogger("vmpooler.api")

WWW_AUTHENTICATE = ("WWW-Authenticate", 'Basic realm="Authentication required"')
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_HOSTNAME = 64  # the length of vms.name
_TOKEN_IN_PATH = re.compile(r"(/token/[^/?#]{0,8})[^/?#]*")


@dataclasses.dataclass
class ApiState:
    """What the handlers of one application share."""

    context: Context
    credentials: Credentials
    status_cache: dict = dataclasses.field(default_factory=dict)
    #: the request rate limits; None unless rate_limiting_enabled
    limiter: Optional[RateLimiter] = None


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def _storable(data: dict) -> dict:
    """``data``, unless it holds text no database can store: JSON's \\ud800 escapes decode to lone
    surrogates (400)."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "the request body holds text that is not valid Unicode (a lone surrogate)") from None
    return data


def redact(uri: str) -> str:
    """The URI with any token in it cut to its first 8 characters, for logs."""
    return _TOKEN_IN_PATH.sub(r"\1...", uri)


def request_summary(request) -> str:
    """``METHOD uri (address)`` for logs, tokens redacted."""
    return f"{request.method} {redact(request.uri)} ({request.remote_ip})"


class BaseHandler(tornado.web.RequestHandler):
    #: whether the request rate limits apply (never to /healthcheck nor the metrics route)
    rate_limited = True

    def initialize(self, version: ApiVersion = ApiVersion.V1) -> None:
        #: the API version of the route's prefix (the unversioned aliases are v1)
        self.version = version

    @property
    def state(self) -> ApiState:
        return self.application.settings["vmpooler"]

    @property
    def context(self) -> Context:
        return self.state.context

    @property
    def credentials(self) -> Credentials:
        return self.state.credentials

    @property
    def db(self):
        """The database; every call goes through ``await self.db.run(function, ...)``."""
        return self.state.context.db

    @property
    def config(self):
        return self.context.config

    async def prepare(self) -> None:
        """The request rate limits (429 past a class's limit), before the handler runs."""
        limiter = self.state.limiter
        if limiter is None or not self.rate_limited:
            return
        credential = await self.credentials.valid_credential(self.request)
        limiter.take(classify(self.request.method, self.request.path, credential is not None),
                     client_of(self.request, credential))

    # --- answers ----------------------------------------------------------------------------
    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")

    def head(self, *args, **kwargs):
        return self.get(*args, **kwargs)

    def reply(self, body, status: int = 200) -> None:
        self.reply_encoded(encode(body), status)

    def reply_encoded(self, text: str, status: int = 200) -> None:
        """Answer with JSON already encoded (``render.encode``)."""
        self.set_status(status)
        self.finish(text)

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        body: Dict[str, Any] = {"ok": False}
        if isinstance(error, ApiError):
            status_code = error.status
            for name, value in error.headers.items():
                self.set_header(name, value)
            body.update({"error": error.error} if error.error else {}, **error.fields)
        elif isinstance(error, StoreUnavailable):
            status_code = 503
            self.set_header("Retry-After", "1")  # a lock or a blip is usually over within a second
            body["error"] = f"the database cannot serve requests now: {error}"
        elif status_code >= 500:
            body["error"] = "internal error"
        elif status_code in MESSAGES:
            body["error"] = MESSAGES[status_code]
        if status_code == 401:
            self.set_header(*WWW_AUTHENTICATE)
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
        self.context.metrics.http_exception(typ.__name__)

    def _request_summary(self) -> str:
        return request_summary(self.request)

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
        return _storable(data)

    def versioned_body(self) -> dict:
        """The body of POST /vm and PUT /vm/<host>: v3 reads it as 3.8.1 does (an empty body is
        ``{}``, the original's messages), the others with ``json_body``."""
        if not self.version.validates:
            return self.json_body()
        return _storable(validation.json_object(self.request.body or b""))

    def hostname(self, raw: str) -> str:
        """A VM name from the path: v3 checks it as 3.8.1 does; v2 and v3 cut it at its first dot;
        v1 shortens ``<name>.<domain>`` (any pool's domain) to ``<name>``."""
        if self.version.validates:
            validation.hostname(raw)
        raw = self.version.path_hostname(raw)
        name, _dot, domain = raw.partition(".")
        if domain in self.config.domains and re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raw = name
        if len(raw) > MAX_HOSTNAME:
            raise ApiError(400, f"the hostname is longer than {MAX_HOSTNAME} characters")
        if not _HOSTNAME.fullmatch(raw):
            raise ApiError(400, f"invalid hostname {shown(raw)}")
        return raw


class NotFoundHandler(BaseHandler):
    """Every path no route matches: 404 ``{"ok": false}``, whatever the method."""

    async def prepare(self) -> None:
        await super().prepare()  # the request rate limits count unknown paths too, as 3.9.1's
        raise ApiError(404)

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, (ApiError, StoreUnavailable)):  # our 404, a 429, a 503
            return super().write_error(status_code, **kwargs)
        super().write_error(404)  # also for methods Tornado does not know (405 elsewhere)
