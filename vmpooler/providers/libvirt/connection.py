"""libvirt connections, one per thread.

A ``virConnect`` is not safe to share across threads without care, so each provider thread opens
its own and keeps it. When any thread finds its connection lost (libvirtd restarted, the SSH
tunnel to a remote hypervisor dropped), it bumps a generation number: every thread then reopens
its connection before its next call instead of failing once more on the dead one.

A hypervisor that stops answering (a hung libvirtd, a host gone from the network) must not hold a
provider thread forever: libvirt's keepalive pings every connection and closes one that missed
KEEPALIVE_COUNT answers, failing the calls waiting on it. Keepalive needs libvirt's event loop,
which runs on a daemon thread of its own, started with the first connection.
"""
from __future__ import annotations

import logging
import threading

import libvirt

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 5  # seconds between pings of a connection that is otherwise idle
KEEPALIVE_COUNT = 5  # pings without an answer before the connection is closed: ~30 s of silence

_event_loop_lock = threading.Lock()
_event_loop_started = False


def start_event_loop() -> None:
    """libvirt's default event loop on a daemon thread, once per process: it must be registered
    before the connections that use it are opened."""
    global _event_loop_started
    with _event_loop_lock:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
        _event_loop_started = True


def _run_event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


class Connections:
    def __init__(self, uri: str, open_connection=libvirt.open):
        self.uri = uri
        self._open = open_connection
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._all: list = []  # every connection opened and not yet closed, for close()
        self.opened = 0  # how many were opened in all (health)

    def get(self):
        """This thread's connection, opened (again) when it has none or its generation is past."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation == self._generation:
            return conn
        if conn is not None:
            self._discard(conn)
        generation = self._generation
        start_event_loop()
        conn = self._open(self.uri)
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        except libvirt.libvirtError as exc:  # a driver without a remote end (test:///) has none
            log.debug("no keepalive on %s: %s", self.uri, exc)
        with self._lock:
            self._all.append(conn)
            self.opened += 1
        self._local.conn, self._local.generation = conn, generation
        return conn

    def lost(self, conn) -> None:
        """``conn`` failed as a dead connection does: every thread reopens before its next call."""
        with self._lock:
            if getattr(self._local, "conn", None) is conn and self._local.generation == self._generation:
                self._generation += 1
        self._local.conn = None
        self._discard(conn)

    def _discard(self, conn) -> None:
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
            else:
                return
        try:
            conn.close()
        except libvirt.libvirtError:
            pass  # already dead

    def stats(self) -> dict:
        with self._lock:
            return {"open": len(self._all), "opened": self.opened, "generation": self._generation}

    def close(self) -> None:
        with self._lock:
            doomed, self._all = self._all, []
        for conn in doomed:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass
