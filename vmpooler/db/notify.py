"""Signals between the processes that share one PostgreSQL database (LISTEN/NOTIFY).

A checkout or a delete on any process must wake the pool manager, which runs in whichever process
leads (``WAKE``); a change on any process makes the cached answers of the others stale
(``CHANGED``: each process counts the changes it hears of in ``Database.generation``). ``Notifier.notify`` sends a signal on a channel (delivered when the sending transaction
commits; outside one, at once); ``Notifier.listen`` keeps a dedicated connection in a thread of its
own, hands every signal to the IOLoop, and reconnects with backoff when the database goes away.
Signals are hints: a lost one costs a pass's delay, never correctness (the manager also runs on its
timer). SQLite has no such mechanism and needs none: one process owns the file.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable, Optional

from sqlalchemy import text
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

WAKE = "vmpooler_wake"
#: a process changed the database: cached answers (/status) of the others are stale
CHANGED = "vmpooler_changed"
#: at most one change signal per process per this many seconds (a busy process changes far more often)
CHANGE_INTERVAL = 0.05
#: seconds between reconnection attempts of a listener that lost the database (doubling, capped)
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 10.0


def libpq_url(url: str) -> str:
    """An SQLAlchemy PostgreSQL URL (postgresql+psycopg://...) as libpq reads it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def notify(conn, channel: str, payload: str = "") -> None:
    """Send a signal on ``channel`` through ``conn`` (an SQLAlchemy connection to PostgreSQL)."""
    conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})


class Listener:
    """Calls ``deliver(channel, payload)`` (from the listening thread) for every signal received."""

    def __init__(self, url: str, channels, deliver: Callable[[str, str], None], poll: float = 0.5):
        self.url = libpq_url(url)
        self.channels = tuple(channels)
        self.deliver = deliver
        self.poll = poll
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        #: set each time the listening connection is (re)established: tests and health use it
        self.connected = threading.Event()

    def start(self) -> "Listener":
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg  # only a PostgreSQL deployment needs the driver

        delay = RECONNECT_FIRST
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    for channel in self.channels:
                        conn.execute(f'LISTEN "{channel}"')
                    self.connected.set()
                    delay = RECONNECT_FIRST
                    while not self._stopping.is_set():
                        for signal in conn.notifies(timeout=self.poll):
                            self.deliver(signal.channel, signal.payload)
            except psycopg.Error as error:
                self.connected.clear()
                if self._stopping.is_set():
                    return
                log.warning("listening for other processes' signals failed, retrying in %.1fs: %s", delay, error)
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX)


class Sender:
    """Sends a signal on ``channel`` to the other processes: at most one NOTIFY per ``interval``
    seconds (signals asked for meanwhile are folded into the next one), sent from ``executor``,
    never on the IOLoop. ``send()`` is called on the IOLoop; ``send(loop)`` from any thread, with
    the IOLoop's loop. The NOTIFY's transaction changes nothing: it does not count as a change of
    this process (``invalidates=False``), so it announces nothing itself."""

    def __init__(self, db, channel: str = WAKE, interval: float = 0.05, executor=None, payload: str = ""):
        self.db = db
        self.channel = channel
        self.interval = interval
        self.executor = executor
        self.payload = payload
        self._lock = threading.Lock()
        self._queued = False
        self._last = 0.0

    def send(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        with self._lock:
            if self._queued:
                return
            self._queued = True
        if loop is None:
            self._later(asyncio.get_running_loop())
        else:
            loop.call_soon_threadsafe(self._later, loop)

    def _later(self, loop) -> None:
        loop.call_later(max(0.0, self._last + self.interval - time.monotonic()), self._fire, loop)

    def _fire(self, loop) -> None:
        with self._lock:
            self._queued = False
        self._last = time.monotonic()
        try:
            loop.run_in_executor(self.executor, self._notify)
        except RuntimeError:  # the executor was shut down: the service is stopping, nobody to tell
            pass

    def _notify(self) -> None:
        try:
            with self.db.write(invalidates=False) as conn:
                notify(conn, self.channel, self.payload)
        except Exception as error:  # a hint only: the timers (the leader's pass, the cache's age) cover a lost one
            log.info("could not signal the other processes on %s: %s", self.channel, error)

