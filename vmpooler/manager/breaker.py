"""A circuit breaker per provider: after repeated transient failures, calls are refused at once
for a while instead of piling onto a backend that is down; trial calls then test whether it is
back. States: closed (normal), open (refusing), half-open (letting trial calls through)."""
from __future__ import annotations

import logging
import time

from vmpooler.model import BreakerState

log = logging.getLogger("vmpooler.manager")

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class CircuitBreaker:
    def __init__(self, name: str, threshold: int = 5, timeout: float = 30, half_open_successes: int = 3,
                 enabled: bool = True, clock=time.monotonic):
        self.name = name
        self.threshold, self.timeout, self.half_open_successes = threshold, timeout, half_open_successes
        self.enabled = enabled
        self.clock = clock
        self.state: BreakerState = CLOSED
        self.failures = 0
        self.successes = 0
        self.opened_at = 0.0
        #: called with the provider's name when the breaker closes again (its trial calls succeeded)
        self.on_closed = lambda name: None

    def allow(self) -> bool:
        """May a call go through now?"""
        if not self.enabled or self.state == CLOSED:
            return True
        if self.state == OPEN and self.clock() - self.opened_at >= self.timeout:
            self._enter(HALF_OPEN)
        return self.state == HALF_OPEN

    def seconds_until_trial(self) -> float:
        """How long until calls may go through again (trial calls once open): 0 when they may now."""
        if not self.enabled or self.state != OPEN:
            return 0.0
        return max(self.opened_at + self.timeout - self.clock(), 0.0)

    def success(self) -> None:
        if self.state == OPEN:
            return  # a call let through before the breaker opened: it proves nothing now
        if self.state == HALF_OPEN:
            self.successes += 1
            if self.successes >= self.half_open_successes:
                self._enter(CLOSED)
        self.failures = 0

    def failure(self) -> None:
        self.failures += 1
        if self.state == HALF_OPEN or (self.state == CLOSED and self.failures >= self.threshold):
            self._enter(OPEN)

    def _enter(self, state: BreakerState) -> None:
        if state == OPEN:
            self.opened_at = self.clock()
        self.successes = 0
        if state == CLOSED:
            self.failures = 0
        log.warning("provider %s: circuit breaker %s -> %s", self.name, self.state, state)
        previous, self.state = self.state, state
        if state == CLOSED and previous != CLOSED:
            self.on_closed(self.name)

    def describe(self) -> dict:
        return {"state": self.state, "failures": self.failures}
