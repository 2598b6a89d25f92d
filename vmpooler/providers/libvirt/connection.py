"""libvirt connections, one per thread.

A ``virConnect`` is not safe to share across threads without care, so each provider thread opens
its own and keeps it. When any thread finds its connection lost (libvirtd restarted, the SSH
tunnel to a remote hypervisor dropped), it bumps a generation number: every thread then reopens
its connection before its next call instead of failing once more on the dead one.
"""
from __future__ import annotations

import threading

import libvirt


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
        conn = self._open(self.uri)
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
