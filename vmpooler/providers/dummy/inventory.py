"""The dummy provider's VMs: in memory, or in a JSON file that every process naming it shares.

Several service processes on one database (and a failover between them) must see one backend, as
they would one vCenter: a VM cloned by one process is listed, checked and destroyed by whichever
leads next. So with a file, every operation holds a lock on ``<file>.lock`` (shared to read,
exclusive to change), reloads the file when another process replaced it since, and a change is
written to a temporary file and renamed over the old one: a kill -9 leaves the old inventory or
the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from typing import Optional


class Inventory:
    def __init__(self, filename: Optional[str]):
        self.filename = filename
        self.vms: dict = {}
        self.folders: dict = {}  # folder -> set of names, so a pool's listing is not a full scan
        self._lock = threading.Lock()
        self._stamp = None  # (inode, mtime, size) of the file as last read or written
        self._lock_file = open(f"{filename}.lock", "a+", encoding="utf-8") if filename else None

    @contextlib.contextmanager
    def reading(self):
        with self._held(fcntl.LOCK_SH):
            yield self

    @contextlib.contextmanager
    def changing(self):
        """Changes made in the block are written when it ends (not when it raises)."""
        with self._held(fcntl.LOCK_EX):
            yield self
            self._save()

    def add(self, name: str, record: dict) -> None:
        self.vms[name] = record
        self.folders.setdefault(record["folder"], set()).add(name)

    def discard(self, name: str) -> None:
        record = self.vms.pop(name, None)
        if record is not None:
            self.folders.get(record["folder"], set()).discard(name)

    def in_folder(self, folder: str) -> list:
        return sorted(self.folders.get(folder, ()))

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()

    # -- the file ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _held(self, mode: int):
        with self._lock:
            if self._lock_file is None:
                yield
                return
            fcntl.flock(self._lock_file.fileno(), mode)
            try:
                self._refresh()
                yield
            finally:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)

    def _file_stamp(self):
        try:
            status = os.stat(self.filename)
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_mtime_ns, status.st_size

    def _refresh(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        vms = {}
        if stamp is not None and self.filename is not None:  # a stamp is of the file
            with open(self.filename, encoding="utf-8") as handle:
                vms = json.load(handle).get("vms", {})
        self.vms, self.folders = {}, {}
        for name, record in vms.items():
            self.add(name, record)
        self._stamp = stamp

    def _save(self) -> None:
        if self.filename is None:
            return
        temporary = f"{self.filename}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"vms": self.vms}, handle)
        os.replace(temporary, self.filename)
        self._stamp = self._file_stamp()
