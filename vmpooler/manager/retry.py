"""One retry policy for the provider work the manager keeps records of: clones, destroys and
queued tasks (snapshot, revert, disk).

After a failed attempt the work waits ``retry_backoff`` seconds, doubling with each further
attempt up to ``retry_backoff_max``, and is given up once it has failed ``<kind>_attempts``
times; a permanent failure gives it up at once. A call the provider's circuit breaker refused
(``CircuitOpen``) is NOT an attempt: the work keeps its count and waits until the breaker may
let calls through again, so work asked for during an outage is done after it, not given up.
"""
from __future__ import annotations

import dataclasses
import datetime
from typing import Callable, Mapping, Optional

from vmpooler.manager.clock import STEP_TOLERANCE
from vmpooler.model import AttemptKind, Retry
from vmpooler.providers.base import CircuitOpen, ProviderError

#: beyond this many doublings any base reaches any sensible cap (2**64 seconds is forever)
MAX_DOUBLINGS = 64


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    base: float
    cap: float
    limits: Mapping[AttemptKind, int]  # attempts before the work is given up
    #: provider name -> seconds until its circuit breaker may let calls through again
    breaker_wait: Callable[[str], float]
    #: the longest a breaker stays open (circuit_breaker_timeout)
    breaker_timeout: float = 0.0

    @classmethod
    def from_settings(cls, settings, breakers: Mapping) -> "RetryPolicy":
        limits = {AttemptKind.CLONE: settings.max_vm_retries or settings.clone_attempts, AttemptKind.DESTROY: settings.destroy_attempts,
                  AttemptKind.TASK: settings.task_attempts}
        return cls(settings.retry_backoff, settings.retry_backoff_max, limits,
                   lambda provider: breakers[provider].seconds_until_trial(), settings.circuit_breaker_timeout)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure: doubling, capped. The exponent stops
        growing once the cap is reached (a pool failing for days must not overflow a float)."""
        return min(self.base * (2 ** min(max(attempts - 1, 0), MAX_DOUBLINGS)), self.cap)

    def after(self, kind: AttemptKind, error: ProviderError, attempts: int, provider: str,
              now: datetime.datetime) -> Retry:
        """What follows ``error`` for work of ``kind`` that had failed ``attempts`` times on
        ``provider``."""
        if isinstance(error, CircuitOpen):
            return Retry(attempts, self.breaker_open_until(provider, now), waits_for_breaker=True)
        attempts += 1
        if not error.transient or attempts >= self.limits[kind]:
            return Retry(attempts, None)
        return Retry(attempts, now + datetime.timedelta(seconds=self.backoff(attempts)))

    def horizon(self, now: datetime.datetime) -> datetime.datetime:
        """No retry is ever set further ahead than this: one that is (the wall clock stepped back
        since it was set) is due now, so a step back never freezes retries (manager/clock.py)."""
        return now + datetime.timedelta(seconds=max(self.cap, self.breaker_timeout) + STEP_TOLERANCE)

    def due(self, next_attempt_at: Optional[datetime.datetime], now: datetime.datetime) -> bool:
        """Is work whose next attempt is at ``next_attempt_at`` (None: no wait) due at ``now``?"""
        return next_attempt_at is None or next_attempt_at <= now or next_attempt_at > self.horizon(now)

    def breaker_open_until(self, provider: str, now: datetime.datetime) -> datetime.datetime:
        """When the provider's breaker may let calls through again (now, if it may already)."""
        return now + datetime.timedelta(seconds=self.breaker_wait(provider))
