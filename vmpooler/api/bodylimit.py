"""Request bodies over ``max_body_size``: 413 with a JSON body, however the body is too large.

Tornado's own limit answers a ``Content-Length`` over it with an empty 400 and closes the
connection while the client may still be sending, so the client sees a reset. Instead every request
passes through ``BodyLimit``, which sees the headers before any of the body is read:

* a declared ``Content-Length`` over the limit (true or not) is answered 413 at once;
* a chunked body is counted as it arrives and answered 413 as soon as it passes the limit;
* after a 413 the rest of the body is read and thrown away (never kept), up to ``DRAIN_BYTES``
  within ``DRAIN_SECONDS``, so that a client still sending can finish and read the answer. A body
  read to its end leaves the connection open for the next request; one beyond those bounds has its
  connection closed.

No handler sees a refused request, and an accepted one never holds more than the limit in memory.
"""
from __future__ import annotations

import logging
import re
from typing import Optional

import tornado.web
from tornado import httputil

from vmpooler.api.base import redact
from vmpooler.api.render import encode

access_log = logging.getLogger("vmpooler.access")

#: most bytes of a refused body read (and thrown away) so that its sender can read the 413
DRAIN_BYTES = 32 << 20
#: most seconds spent waiting for a refused body whose Content-Length is over the limit (it may be a lie)
DRAIN_SECONDS = 10.0
#: Tornado's own limit per request, raised out of the way: BodyLimit enforces the real one
_UNLIMITED = 1 << 62
_LENGTH = re.compile(r"[0-9]{1,20}")


def declared_length(headers: httputil.HTTPHeaders) -> Optional[int]:
    """The Content-Length the client declared; None without one, or when malformed (Tornado then
    answers 400 itself)."""
    value = headers.get("Content-Length")
    if value is None:
        return None
    pieces = set(re.split(r",[ \t]*", value.strip()))  # proxies may repeat it: "12, 12"
    if len(pieces) != 1 or not _LENGTH.fullmatch(next(iter(pieces))):
        return None
    return int(pieces.pop())


class BodyLimit(httputil.HTTPMessageDelegate):
    """Wraps the application's delegate for one request; see the module's text."""

    def __init__(self, inner: httputil.HTTPMessageDelegate, connection, limit: int):
        self.inner, self.connection, self.limit = inner, connection, limit
        self.request_line: Optional[httputil.RequestStartLine] = None
        self.inner_open = False  # the inner delegate has the headers and has not been closed
        self.received = 0  # bytes passed on, or thrown away once refused
        self.refused = False

    def headers_received(self, start_line, headers: httputil.HTTPHeaders):
        self.request_line = start_line
        self.connection.set_max_body_size(_UNLIMITED)
        declared = declared_length(headers)
        if declared is not None and declared > self.limit:
            headers.pop("Expect", None)  # the 413 is the final answer: no "100 Continue" after it
            self.connection.set_body_timeout(DRAIN_SECONDS)
            self._refuse()
            return None
        self.inner_open = True
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):
        self.received += len(chunk)
        if self.refused:
            if self.received > DRAIN_BYTES:
                self.connection.close()
            return None
        if self.received > self.limit:  # only a chunked body can get here
            self.on_connection_close()  # the handler is never run: let it drop what it has
            self._refuse()
            return None
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        if self.refused:
            self.connection.finish()  # the body is read to its end: the connection may be reused
        else:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if self.inner_open:
            self.inner_open = False
            self.inner.on_connection_close()

    def _refuse(self) -> None:
        self.refused = True
        body = encode({"ok": False, "error": f"the request body is larger than {self.limit} bytes"}).encode()
        headers = httputil.HTTPHeaders({"Content-Type": "application/json", "Content-Length": str(len(body))})
        self.connection.write_headers(httputil.ResponseStartLine("HTTP/1.1", 413, "Payload Too Large"),
                                      headers, body)
        address = getattr(self.connection.context, "remote_ip", "")
        line = self.request_line
        assert line is not None  # refused only once the headers were read
        access_log.info("413 %s %s (%s): body over %d bytes", line.method, redact(line.path), address, self.limit)


class LimitedApplication(tornado.web.Application):
    """A Tornado application whose every request passes through ``BodyLimit`` first (the limit is
    the application setting ``max_body_size``)."""

    def start_request(self, server_conn, request_conn) -> httputil.HTTPMessageDelegate:
        return BodyLimit(super().start_request(server_conn, request_conn), request_conn,
                         self.settings["max_body_size"])
