"""Failed-authentication limiter: in memory, per client address, a sliding window.

A client that failed ``limit`` authentications (bad X-AUTH-TOKEN, bad Basic credentials, an
unknown token looked up) within ``window`` seconds is refused (429) on every request that
authenticates, even with good credentials, until the oldest of those failures leaves the window.
Requests that authenticate nothing are never limited, and successes are not counted.
"""
from __future__ import annotations

import collections
import math
import time
from typing import Callable, Optional


class AuthFailureLimiter:
    #: above this many clients, those whose failures all left the window are forgotten
    SWEEP_AT = 10000

    def __init__(self, limit: int, window: float = 60.0, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.enabled, self.clock = limit, window, enabled, clock
        # Only the newest ``limit`` failures matter: the client is blocked while the oldest of them
        # is still inside the window.
        self._failures = {}

    def retry_after(self, client: str) -> Optional[int]:
        """Seconds the client must wait, or None when it may authenticate now."""
        failures = self._failures.get(client)
        if not self.enabled or failures is None or len(failures) < self.limit:
            return None
        wait = failures[0] + self.window - self.clock()
        return math.ceil(wait) if wait > 0 else None

    def failed(self, client: str) -> None:
        if not self.enabled:
            return
        if client not in self._failures and len(self._failures) >= self.SWEEP_AT:
            self._sweep()
        self._failures.setdefault(client, collections.deque(maxlen=self.limit)).append(self.clock())

    def _sweep(self) -> None:
        horizon = self.clock() - self.window
        for client in [c for c, f in self._failures.items() if f[-1] <= horizon]:
            del self._failures[client]
