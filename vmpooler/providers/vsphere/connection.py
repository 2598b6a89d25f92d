"""A small pool of logged-in vSphere sessions, shared by the provider's worker threads.

Each slot holds one session or nothing; a thread takes a slot, checks that its session is alive
(``CurrentTime``), logs in again when it is not (with bounded retries and a growing pause), uses
it alone, and gives the slot back. A session that failed on the wire is dropped on the way back,
so the next user starts afresh instead of tripping over the same broken socket.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import Callable, Optional

from pyVim.connect import Disconnect, SmartConnect

from vmpooler.providers.base import PermanentError, TransientError
from vmpooler.providers.vsphere import errors
from vmpooler.providers.vsphere.config import ProviderOptions

log = logging.getLogger(__name__)


class Connection:
    """One logged-in session: the service instance and its (cached) service content."""

    def __init__(self, service_instance):
        self.service_instance = service_instance
        self.content = service_instance.RetrieveContent()

    def alive(self) -> bool:
        try:
            self.service_instance.CurrentTime()
            return True
        except Exception as exc:  # any failure means "log in again"; the reason is logged only
            log.info("vSphere session no longer usable (%s); reconnecting", errors.describe(exc))
            return False

    def close(self) -> None:
        try:
            Disconnect(self.service_instance)
        except Exception as exc:  # the server may be gone already; nothing to release then
            log.debug("vSphere logout failed: %s", errors.describe(exc))


def login(options: ProviderOptions) -> Connection:
    """Open one session. The password goes to the server only, never into a message."""
    service_instance = SmartConnect(
        host=options.host, port=options.port, user=options.username, pwd=options.password,
        disableSslCertValidation=options.insecure, httpConnectionTimeout=options.vsphere_timeout)
    return Connection(service_instance)


class ConnectionPool:
    """At most ``options.pool_size`` sessions, opened lazily and re-opened when they fail."""

    def __init__(self, options: ProviderOptions, connect: Callable[[ProviderOptions], Connection] = login,
                 sleep: Callable[[float], None] = time.sleep):
        self.options = options
        self._connect = connect
        self._sleep = sleep
        self._slots: queue.LifoQueue = queue.LifoQueue()
        for _ in range(options.pool_size):
            self._slots.put(None)
        self._lock = threading.Lock()
        self._in_use = 0
        self._closed = False

    @contextlib.contextmanager
    def connection(self):
        """A live session for this thread alone; raises TransientError when none can be had."""
        if self._closed:
            raise PermanentError(f"vSphere {self.options.server}: the provider is closed")
        try:
            slot = self._slots.get(timeout=self.options.pool_timeout)
        except queue.Empty:
            raise TransientError(f"vSphere {self.options.server}: no connection free after "
                                 f"{self.options.pool_timeout:g}s") from None
        with self._lock:
            self._in_use += 1
        try:
            slot = self._live(slot)
            yield slot
        except BaseException as exc:
            if slot is not None and errors.is_transport_failure(exc):
                slot.close()
                slot = None
            raise
        finally:
            with self._lock:
                self._in_use -= 1
            self._give_back(slot)

    def _live(self, slot: Optional[Connection]) -> Connection:
        if slot is not None and slot.alive():
            return slot
        if slot is not None:
            slot.close()
        return self._login_with_retries()

    def _login_with_retries(self) -> Connection:
        what = f"connecting to vSphere {self.options.server} as {self.options.username}"
        failure = None
        for attempt in range(1, self.options.max_tries + 1):
            try:
                return self._connect(self.options)
            except Exception as exc:
                failure = errors.translate(exc, what)
                if not failure.transient:
                    raise failure from exc
                log.warning("%s failed (attempt %d of %d): %s", what, attempt, self.options.max_tries, failure)
            if attempt < self.options.max_tries:
                self._sleep(self.options.retry_factor * attempt)
        raise TransientError(f"{failure} (gave up after {self.options.max_tries} attempts)")

    def _give_back(self, slot: Optional[Connection]) -> None:
        if self._closed and slot is not None:
            slot.close()
            slot = None
        self._slots.put(slot)

    def stats(self) -> dict:
        with self._lock:
            in_use = self._in_use
        idle = list(self._slots.queue)  # a snapshot; good enough for a status page
        return {"size": self.options.pool_size, "in_use": in_use,
                "open": in_use + sum(1 for slot in idle if slot is not None)}

    def close(self) -> None:
        """Log out of every idle session; sessions in use are closed when given back."""
        self._closed = True
        while True:
            try:
                slot = self._slots.get_nowait()
            except queue.Empty:
                break
            if slot is not None:
                slot.close()
