"""The Prometheus endpoint, and what the original's collector middleware counted of each request.

The endpoint (``prometheus_endpoint``, /prometheus by default) exists only with a ``:prometheus:``
section. Every request is counted by status code, lower-case method and path, the path cut as the
original cuts it (everything after /vm/, /ondemand/, /token/, /lib/, /img/), so no hostname, token
or request id becomes a label. Beyond the original, which let any client create series: the
/ondemandvm/<request id> path (which its /ondemand/ pattern misses) is cut too, a path no route
matches counts as ``unmatched`` (as does a 404 for a name in the path that is kept, such as an
unknown dashboard asset), and a method Tornado does not know as ``other``.
"""
from __future__ import annotations

import re
import urllib.parse
from typing import Dict, Tuple, Type

import tornado.web
from tornado.ioloop import IOLoop

from vmpooler.api.base import BaseHandler, NotFoundHandler
from vmpooler.api.ondemand import OndemandBodyHandler, OndemandRequestHandler
from vmpooler.api.vm import VmHandler
from vmpooler.api.vm_tasks import DiskHandler, RevertHandler, SnapshotHandler
from vmpooler.api.vms import VmsHandler
from vmpooler.metrics import CONTENT_TYPE, Metrics

_CUT = [(re.compile(rf"/{part}/.+$"), f"/{part}") for part in ("vm", "ondemand", "ondemandvm", "token", "lib", "img")]
METHODS = frozenset(("get", "head", "post", "put", "delete", "patch", "options"))
UNMATCHED = "unmatched"

#: the original's http_requests_vm_total (method, subpath, operation) by handler class and method,
#: with its quirks: POST /vm/<pools> counted as get.vm.template, POST /ondemandvm/<pools> as
#: delete.ondemand.template, a snapshot revert as post.vm.disksize. Keyed by the class itself, so
#: that renaming a handler cannot silently drop its counts.
VM_OPERATIONS: Dict[Tuple[Type[tornado.web.RequestHandler], str], Tuple[str, str, str]] = {
    (VmsHandler, "POST"): ("post", "vm", "checkout"),
    (VmHandler, "POST"): ("get", "vm", "template"),
    (VmHandler, "GET"): ("get", "vm", "hostname"),
    (VmHandler, "DELETE"): ("delete", "vm", "hostname"),
    (VmHandler, "PUT"): ("put", "vm", "modify"),
    (DiskHandler, "POST"): ("post", "vm", "disksize"),
    (SnapshotHandler, "POST"): ("post", "vm", "snapshot"),
    (RevertHandler, "POST"): ("post", "vm", "disksize"),
    (OndemandBodyHandler, "POST"): ("post", "ondemand", "requestid"),
    (OndemandRequestHandler, "POST"): ("delete", "ondemand", "template"),
    (OndemandRequestHandler, "GET"): ("get", "ondemand", "request"),
    (OndemandRequestHandler, "DELETE"): ("delete", "ondemand", "request"),
}


def collapse_path(path: str) -> str:
    """``/api/v1/vm/debian-7-i386`` -> ``/api/v1/vm`` (the original's strip_hostnames_from_path)."""
    for pattern, replacement in _CUT:
        path = pattern.sub(replacement, path)
    return path


def _path_label(handler: tornado.web.RequestHandler, status: int) -> str:
    """The collapsed path; ``unmatched`` when no route matched, or when a route answered 404 for a
    name from the path that the collapsing kept (an unknown dashboard asset or summary section)."""
    if isinstance(handler, NotFoundHandler):
        return UNMATCHED
    path = collapse_path(handler.request.path)
    if status == 404 and any(arg and arg in urllib.parse.unquote(path) for arg in handler.path_args):
        return UNMATCHED
    return path


def observe_request(handler: tornado.web.RequestHandler) -> None:
    """Count one answered request (from the application's log function: every handler passes there)."""
    metrics = handler.application.settings["vmpooler"].context.metrics
    if not metrics.enabled:
        return
    request = handler.request
    method = request.method.lower() if request.method.lower() in METHODS else "other"
    status = handler.get_status()
    metrics.http_request(method, _path_label(handler, status), str(status), request.request_time())
    operation = VM_OPERATIONS.get((type(handler), request.method))
    if operation is not None:
        metrics.http_vm_operation(*operation)


class MetricsHandler(BaseHandler):
    rate_limited = False  # Prometheus scrapes it

    async def get(self) -> None:
        # Rendering thousands of samples (per-pool histograms) takes milliseconds: in a thread, so
        # that requests arriving meanwhile are not held up behind a scrape.
        metrics = self.context.metrics
        assert isinstance(metrics, Metrics)  # routed only when metrics are kept (metrics_rules)
        body = await IOLoop.current().run_in_executor(self.context.executor, metrics.exposition)
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(body)


def metrics_rules(context) -> list:
    """The endpoint's route, when metrics are kept (first: the original's exporter answered before the API)."""
    if not context.metrics.enabled:
        return []
    return [tornado.web.url("^" + re.escape(context.metrics.endpoint) + "$", MetricsHandler)]
