"""What the HTTP handlers are given: the parts of the running service they may use.

Handlers never see the providers or the manager itself; they change state through the db layer
and nudge the manager: ``refill`` after a checkout, so that the pool refills at once, ``destroy``
after a delete, so that the VM is destroyed at once, ``wake`` after other changes it should act
on (a task, a request).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from typing import Any, Callable, Optional

from vmpooler.config import Config
from vmpooler.db.database import Database
from vmpooler.metrics import DISABLED, Hooks


@dataclasses.dataclass
class Context:
    config: Config
    db: Database
    #: the configured auth store (vmpooler.auth), None when :auth: is not configured
    auth: Optional[Any] = None
    #: threads for blocking work that is not a provider call (bcrypt checks)
    executor: Optional[concurrent.futures.Executor] = None
    #: asks the pool manager for a pass now (a no-op when no manager runs, as in API tests)
    wake: Callable[[], None] = lambda: None
    #: asks the pool manager to fill the pools now, not a whole pass (a no-op when none runs)
    refill: Callable[[], None] = lambda: None
    #: asks the pool manager to destroy a VM a client gave back (its completed row) now, not in
    #: a whole pass (a no-op when none runs)
    destroy: Callable[[Any], None] = lambda vm: None
    #: provider name -> health mapping, for /status
    provider_health: Callable[[], dict] = dict
    #: {pool: why and until when it starts no clone} (manager/backoff.py), for /status
    pool_waits: Callable[[], dict] = dict
    #: which process runs the pool manager (manager/leader.py), for /status and the health check
    leader: Callable[[], dict] = lambda: {"leader": True}
    #: why the pool manager is not doing its work, or None (always None when no manager runs)
    manager_stalled: Callable[[], Optional[str]] = lambda: None
    #: the Prometheus hooks (vmpooler.metrics); DISABLED without a :prometheus: section
    metrics: Hooks = DISABLED
    #: time.monotonic() at start: /status says the uptime, which no step of the wall clock changes
    started_at: float = dataclasses.field(default_factory=time.monotonic)
