"""Answers that hand VMs out: the Idempotency-Key header, and undoing what an answer that cannot
reach its client handed out.

A checkout is done before its answer is written. If the client is gone by then (its connection
closed or was reset: Tornado's ``on_connection_close``, a peek at the socket, or the write
failing with StreamClosedError), the answer can never arrive, so what it handed out is undone
(``undo``): the VMs go back to ready (db/handout.py). An answer written into the socket's
buffer just before the client vanished cannot be told from one it read; a client that retries
with an ``Idempotency-Key`` gets that answer again instead of more VMs (docs/api.md).
"""
from __future__ import annotations

import datetime
import hashlib
import re
import socket
from typing import Awaitable, Callable, Optional

from tornado.iostream import StreamClosedError

from vmpooler.api.base import BaseHandler
from vmpooler.api.errors import ApiError
from vmpooler.api.render import encode
from vmpooler.db.idempotency import Key

HEADER = "Idempotency-Key"
#: the draft's header is a Structured Field string ("..."); a bare value is taken as well
_QUOTED = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_BARE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:/=]+")  # an HTTP token (and : / =), unquoted
MAX_KEY = 255
_GONE = {"closed": "closed", "reset": "was reset"}


def request_key(handler, scope: str) -> Optional[Key]:
    """The request's Idempotency-Key (None without the header), scoped to ``scope`` (the token's
    hash, "" without one); 400 for a malformed one. Its fingerprint covers the method, the path
    and the body, so a different request under the same key is told apart (422)."""
    raw = handler.request.headers.get(HEADER)
    if raw is None:
        return None
    raw = raw.strip()
    quoted = _QUOTED.fullmatch(raw)
    value = re.sub(r"\\(.)", r"\1", quoted.group(1)) if quoted else raw if _BARE.fullmatch(raw) else None
    if not value or len(value) > MAX_KEY:
        raise ApiError(400, f"the {HEADER} header must be a quoted string of 1 to {MAX_KEY} printable "
                            'characters, e.g. Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"')
    digest = hashlib.sha256()
    for part in (handler.request.method.encode(), handler.request.path.encode(), handler.request.body or b""):
        digest.update(len(part).to_bytes(8, "big") + part)
    hours = handler.config.settings.idempotency_key_ttl
    return Key(scope, value, digest.hexdigest(), datetime.timedelta(hours=hours))


class HandsOut(BaseHandler):
    """Mixin of the handlers whose answer hands VMs out (before BaseHandler in the bases)."""

    connection_closed = False

    def on_connection_close(self) -> None:
        self.connection_closed = True
        super().on_connection_close()

    def client_gone(self) -> Optional[str]:
        """"closed" or "reset" when the client can no longer read an answer, None while it can. A
        peek at the socket sees a FIN or RST that Tornado has not read yet (it reads only between
        turns of the IOLoop, and the answer is written in the turn the checkout ended in)."""
        if self.connection_closed:
            return "closed"
        stream = getattr(self.request.connection, "stream", None)
        if stream is None or stream.closed() or stream.socket is None:
            return "closed"
        try:
            peeked = stream.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except ConnectionResetError:
            return "reset"
        except OSError:
            return "closed"
        return "closed" if peeked == b"" else None

    async def deliver(self, body: dict, status: int, undo: Callable[[str], Awaitable]) -> bool:
        """Answer ``body`` with ``status``; when the client is gone before it is written, or the
        write fails, ``await undo(reason)`` instead and answer a 503 saying so (a client that only
        half-closed its side may still read it). Whether the answer was written."""
        gone = self.client_gone()
        if gone is None:
            self.set_status(status)
            try:
                await self.finish(encode(body))
                return True
            except StreamClosedError:
                gone = "closed"
        await undo(f"the client's connection {_GONE[gone]} before the answer reached it")
        if not self._finished:
            self.set_status(503)
            try:
                await self.finish(encode({"ok": False, "error": "the connection closed before the answer could "
                                                                "be written; nothing was handed out"}))
            except StreamClosedError:
                pass
        return False
