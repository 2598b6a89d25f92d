"""The HTTP server: Tornado's, with its client connections bounded.

- Time: a connection must send each request's head within ``http_idle_timeout`` seconds of
  connecting or of its previous answer (Tornado's one timer for an idle keep-alive connection and
  for slow headers), and its body within ``http_body_timeout``; past either it is closed.
- Number: past ``max_connections`` open connections a new one is answered 503 (JSON, Retry-After)
  and closed, without reading its request.
- File descriptors: when accept() fails for want of descriptors (EMFILE, ENFILE), Tornado's own
  accept loop would log a traceback per attempt, as fast as the listening socket stays readable
  (hundreds of megabytes a minute). Here accepting pauses for ``ACCEPT_PAUSE`` seconds (the
  kernel's listen queue holds the waiting clients), the open connections are served as before, and
  the condition is logged once a minute with a count.
"""
from __future__ import annotations

import errno
import logging
import resource
import socket
import time
from typing import Any, Dict, Optional

from tornado import gen
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError

log = logging.getLogger("vmpooler.api")

#: seconds accepting pauses after accept() found no file descriptor free
ACCEPT_PAUSE = 0.1
#: accept() calls per readiness of the listening socket (Tornado's figure), so other work runs too
ACCEPTS_PER_TURN = 128
#: seconds between two log lines about one condition (out of descriptors, refused connections)
REPORT_EVERY = 60.0
#: seconds a refused client may take to finish sending its request (read and dropped, so that
#: closing does not reset the connection before the client reads the 503)
REFUSED_DRAIN_SECONDS = 1.0
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")


def default_max_connections() -> int:
    """Three quarters of this process's file-descriptor limit: the rest stays free for the
    database, the providers, the log and the refusals themselves."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, soft * 3 // 4) if soft != resource.RLIM_INFINITY else 65536


class EveryMinute:
    """Counts occurrences of one condition and logs it at most once per ``REPORT_EVERY`` seconds,
    with how many there were since the last line: a flood costs one line a minute."""

    def __init__(self, message: str, clock=time.monotonic):
        self.message = message  # formatted with count= and the keywords given to note()
        self.clock = clock
        self.count = 0
        self.logged_at: Optional[float] = None

    def note(self, **details) -> None:
        self.count += 1
        now = self.clock()
        if self.logged_at is None or now - self.logged_at >= REPORT_EVERY:
            log.warning(self.message.format(count=self.count, **details))
            self.count, self.logged_at = 0, now


class BoundedHTTPServer(HTTPServer):
    def initialize(self, request_callback, max_connections: Optional[int] = None,  # type: ignore[override]
                   **kwargs) -> None:
        super().initialize(request_callback, **kwargs)
        self.max_connections = max_connections or default_max_connections()
        self.out_of_descriptors = EveryMinute(
            "out of file descriptors ({error}): accepting paused, {open} open connections still served; "
            "{count} accept attempts failed since the last such line")
        self.refused = EveryMinute(
            "{count} connections refused (503) since the last such line: {open} open, max_connections is {max}")

    # -- accepting ---------------------------------------------------------------------------
    def add_sockets(self, sockets) -> None:
        """As TCPServer's, with this server's accept loop (``_accept_from``)."""
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_from(sock)

    def _accept_from(self, sock: socket.socket):
        """Accept connections from ``sock`` on the IOLoop; returns the function that stops it."""
        io_loop = IOLoop.current()
        state: Dict[str, Any] = {"stopped": False, "resume": None}

        def accept(_fd, _events) -> None:
            for _ in range(ACCEPTS_PER_TURN):
                if state["stopped"]:
                    return
                try:
                    connection, address = sock.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as error:
                    if error.errno not in _OUT_OF_DESCRIPTORS:
                        raise
                    self.out_of_descriptors.note(error=error.strerror, open=len(self._connections))
                    io_loop.remove_handler(sock)  # until some descriptor is free again
                    state["resume"] = io_loop.call_later(ACCEPT_PAUSE, resume)
                    return
                self._handle_connection(connection, address)

        def resume() -> None:
            state["resume"] = None
            if not state["stopped"]:
                io_loop.add_handler(sock, accept, IOLoop.READ)

        def stop() -> None:
            state["stopped"] = True
            if state["resume"] is not None:
                io_loop.remove_timeout(state["resume"])
            else:
                io_loop.remove_handler(sock)

        io_loop.add_handler(sock, accept, IOLoop.READ)
        return stop

    # -- one connection ------------------------------------------------------------------------
    def handle_stream(self, stream, address) -> None:
        if len(self._connections) >= self.max_connections:
            self.refused.note(open=len(self._connections), max=self.max_connections)
            IOLoop.current().add_future(gen.convert_yielded(_refuse(stream)), lambda _done: None)
            return
        super().handle_stream(stream, address)


async def _refuse(stream) -> None:
    """Answer 503 before reading the request, then read (and drop) what the client still sends for
    a moment before closing: closing with unread data would reset the connection, and the client
    could lose the answer."""
    body = b'{"ok": false, "error": "too many connections; try again later"}'
    try:
        await stream.write(_REFUSAL % (len(body), body))
        stream.socket.shutdown(socket.SHUT_WR)
        await gen.with_timeout(IOLoop.current().time() + REFUSED_DRAIN_SECONDS, stream.read_until_close())
    except (StreamClosedError, OSError, gen.TimeoutError):
        pass
    finally:
        stream.close()
