"""The route table and ``make_app``: every route under /api/v1, /api/v2 and /api/v3 (one set of
handlers, each given the ``ApiVersion`` of its prefix), the original's unversioned aliases, the
dashboard's routes, a JSON 404 for anything else, and the OpenAPI document at
/api/v<n>/openapi.json."""
from __future__ import annotations

import json
import logging
import os
import re
from typing import List

import tornado.web

from vmpooler.api import dashboard
from vmpooler.api.auth import Credentials
from vmpooler.api.base import ApiState, BaseHandler, NotFoundHandler
from vmpooler.api.metrics import metrics_rules, observe_request
from vmpooler.api.bodylimit import LimitedApplication
from vmpooler.api.ratelimit import RateLimiter
from vmpooler.api.config import (CloneTargetHandler, ConfigHandler, PoolSizeHandler, PoolSizeUndoHandler,
                                 PoolTemplateHandler, PoolTemplateUndoHandler)
from vmpooler.api.dlq import DeadLetterHandler
from vmpooler.api.fullconfig import FullConfigHandler
from vmpooler.api.healthcheck import HealthcheckHandler
from vmpooler.api.poolreset import PoolResetHandler
from vmpooler.api.ondemand import OndemandBodyHandler, OndemandRequestHandler
from vmpooler.api.poolstat import PoolstatHandler, TotalRunningHandler
from vmpooler.api.status import StatusHandler
from vmpooler.api.summary import SummaryHandler
from vmpooler.api.tokens import TokenHandler, TokensHandler
from vmpooler.api.vm import VmHandler
from vmpooler.api.vm_tasks import DiskHandler, RevertHandler, SnapshotHandler
from vmpooler.api.version import ApiVersion
from vmpooler.api.vms import VmsHandler
from vmpooler.context import Context

PREFIX = ApiVersion.V1.prefix
OPENAPI_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")
access_log = logging.getLogger("vmpooler.access")


class OpenApiHandler(BaseHandler):
    def get(self) -> None:
        self.reply(self.application.settings["openapi"])


# (path under /api/v<n> in OpenAPI's notation, handler, whether the unversioned path works too).
# The original's Reroute aliases these unversioned paths; POST /vm/<h>/disk/<size> is aliased as
# well (the original mapped PUT there, a route that does not exist).
ROUTES = [
    ("/vm", VmsHandler, True),
    ("/vm/{hostname}", VmHandler, True),
    ("/vm/{hostname}/snapshot", SnapshotHandler, True),
    ("/vm/{hostname}/snapshot/{snapshot}", RevertHandler, True),
    ("/vm/{hostname}/disk/{size}", DiskHandler, True),
    ("/token", TokensHandler, True),
    ("/token/{token}", TokenHandler, True),
    ("/status", StatusHandler, True),
    ("/summary", SummaryHandler, True),
    ("/summary/{section}", SummaryHandler, True),
    ("/summary/{section}/{key}", SummaryHandler, True),
    ("/poolstat", PoolstatHandler, False),
    ("/totalrunning", TotalRunningHandler, False),
    ("/ondemandvm", OndemandBodyHandler, False),
    ("/ondemandvm/{request_id}", OndemandRequestHandler, False),
    ("/openapi.json", OpenApiHandler, False),
    ("/config", ConfigHandler, False),
    ("/config/poolsize", PoolSizeHandler, False),
    ("/config/poolsize/{pool}", PoolSizeUndoHandler, False),
    ("/config/pooltemplate", PoolTemplateHandler, False),
    ("/config/pooltemplate/{pool}", PoolTemplateUndoHandler, False),
    ("/config/clonetarget", CloneTargetHandler, False),
    ("/poolreset", PoolResetHandler, False),
    ("/dlq", DeadLetterHandler, False),
]
#: routes that only /api/v3 has (3.x added them)
V3_ROUTES = [
    ("/full_config", FullConfigHandler),
]
#: routes outside /api/v1, as the original mounts them
ROOT_ROUTES = [
    ("/healthcheck", HealthcheckHandler),
]


def _pattern(path: str) -> str:
    """``/vm/{hostname}`` -> ``^/vm/([^/]+)/?$`` (a trailing slash is accepted, as Sinatra does)."""
    return "^" + re.sub(r"\\\{\w+\\\}", "([^/]+)", re.escape(path)) + "/?$"


def _url(path: str, handler, version: ApiVersion) -> tornado.web.URLSpec:
    return tornado.web.url(_pattern(path), handler, {"version": version}, name=path)


def rules() -> list:
    result: List[tornado.web.URLSpec] = []
    for version in ApiVersion:
        routes = ROUTES + [(path, handler, False) for path, handler in V3_ROUTES] if version.validates else ROUTES
        result.extend(_url(version.prefix + path, handler, version) for path, handler, _aliased in routes)
    result.extend(_url(path, handler, ApiVersion.V1) for path, handler, aliased in ROUTES if aliased)
    result.extend(tornado.web.url(pattern, handler, name=name) for name, pattern, handler in dashboard.ROUTES)
    return result + _root_rules()


def _root_rules() -> list:
    return [tornado.web.url(_pattern(path), handler, name=path) for path, handler in ROOT_ROUTES]


def _log_request(every: bool):
    """Tornado's access log, with tokens cut from paths; every request only with request_logger."""

    def log(handler) -> None:
        observe_request(handler)
        status = handler.get_status()
        # 503 is expected (an empty pool, the database busy): worth a warning, not an error
        level = (logging.ERROR if status >= 500 and status != 503 else logging.WARNING if status == 503
                 else logging.INFO if every else logging.DEBUG)
        if not access_log.isEnabledFor(level):
            return  # the summary (with its token redaction) costs more than the rest of a fast request
        summary = handler._request_summary() if isinstance(handler, BaseHandler) else handler.request.method
        access_log.log(level, "%d %s %.2fms", status, summary, 1000.0 * handler.request.request_time())

    return log


def _application(context: Context, routes: list, **tornado_settings) -> tornado.web.Application:
    """``routes`` with a JSON 404 for any other path, every request counted and logged, every body
    limited (413 JSON)."""
    settings = context.config.settings
    limiter = RateLimiter(context.config.rate_limits) if settings.rate_limiting_enabled else None
    tornado_settings.setdefault("log_function", _log_request(settings.request_logger))
    return LimitedApplication(routes, default_handler_class=NotFoundHandler,
                              vmpooler=ApiState(context, Credentials.for_context(context), limiter=limiter),
                              max_body_size=settings.max_body_size, **tornado_settings)


def make_app(context: Context, **tornado_settings) -> tornado.web.Application:
    with open(OPENAPI_FILE, encoding="utf-8") as handle:
        openapi = json.load(handle)
    return _application(context, metrics_rules(context) + rules(), openapi=openapi, **tornado_settings)


def make_metrics_app(context: Context, **tornado_settings) -> tornado.web.Application:
    """What a manager-only process serves when metrics are kept, as the original's cut-down API
    does: the metrics endpoint and /healthcheck, nothing else (JSON 404)."""
    return _application(context, metrics_rules(context) + _root_rules(), **tornado_settings)
