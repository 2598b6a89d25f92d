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

import tornado.web

from vmpooler.api.auth import Credentials
from vmpooler.api.errors import MESSAGES, ApiError
from vmpooler.api.render import encode, shown
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


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def redact(uri: str) -> str:
    """The URI with any token in it cut to its first 8 characters, for logs."""
    return _TOKEN_IN_PATH.sub(r"\1...", uri)


def request_summary(request) -> str:
    """``METHOD uri (address)`` for logs, tokens redacted."""
    return f"{request.method} {redact(request.uri)} ({request.remote_ip})"


class BaseHandler(tornado.web.RequestHandler):
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
        body = {"ok": False}
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
        try:  # JSON's \ud800 escapes decode to lone surrogates, which no database can store
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "the request body holds text that is not valid Unicode (a lone surrogate)") from None
        return data

    def hostname(self, raw: str) -> str:
        """A VM name from the path; ``<name>.<domain>`` (any pool's domain) is shortened to ``<name>``."""
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

    def prepare(self) -> None:
        raise ApiError(404)

    def write_error(self, status_code: int, **kwargs) -> None:
        super().write_error(404)  # also for methods Tornado does not know (405 elsewhere)
