"""Request rate limits (``rate_limiting_enabled``), with 3.9.1's classes, limits, 429 body and
headers (classes and numbers: ``vmpooler.rate_limits``), without its two holes:

* A client is a VALID credential (a known token, or a user whose password checked out), else its
  address: 3.9.1 gives any X-AUTH-TOKEN value a bucket of its own, so a made-up token per request
  was never limited. Here an unknown token counts against its address, and a valid credential
  has its own buckets, so it is never refused because someone else at its address was.
* The address is the peer's, or X-Real-IP / X-Forwarded-For only with ``behind_proxy`` (the
  HTTP server's ``xheaders``); 3.9.1 believed X-Forwarded-For from any private address.

Each window is fixed: it starts at a client's first counted request and lasts ``period`` seconds;
a refused request is not counted. Counts are kept in the memory of each process (like the
failed-authentication limits in ``auth.py``, which are a separate thing).
"""
from __future__ import annotations

import math
import re
import time
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from vmpooler.api.errors import ApiError
from vmpooler.rate_limits import Limit, LimitClass

_VM_PATH = re.compile(r"/vm(/|$)")


def classify(method: str, path: str, authenticated: bool) -> LimitClass:
    """3.9.1's classes: a POST or DELETE on a /vm path, else by whether a credential is valid."""
    if _VM_PATH.search(path):
        if method == "POST":
            return LimitClass.VM_CREATION
        if method == "DELETE":
            return LimitClass.VM_DELETION
    return LimitClass.AUTHENTICATED if authenticated else LimitClass.GLOBAL_PER_IP


class RateLimiter:
    """Counts per (class, client) in fixed windows, in memory, bounded in size."""

    #: above this many windows, those that ended are forgotten (then, if need be, the oldest)
    SWEEP_AT = 50000

    def __init__(self, limits: Mapping[LimitClass, Limit], clock: Callable[[], float] = time.monotonic):
        self.limits, self.clock = dict(limits), clock
        self._windows: Dict[Tuple[LimitClass, str], List[float]] = {}  # (class, client) -> [window end, count]

    def take(self, kind: LimitClass, client: str) -> None:
        """Count one request of ``client`` in ``kind``, or raise the 429 when its window is full."""
        limit, now = self.limits[kind], self.clock()
        key = (kind, client)
        window = self._windows.get(key)
        if window is None or window[0] <= now:
            if key not in self._windows and len(self._windows) >= self.SWEEP_AT:
                self._sweep(now)
            window = self._windows[key] = [now + limit.period, 0]
        if window[1] >= limit.limit:
            raise refusal(limit, window[0], now)
        window[1] += 1

    def _sweep(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if w[0] <= now]:
            del self._windows[key]
        while len(self._windows) >= self.SWEEP_AT:
            del self._windows[next(iter(self._windows))]


def refusal(limit: Limit, ends: float, now: float) -> ApiError:
    """3.9.1's 429: its body and X-RateLimit-* / Retry-After headers (windows run on the monotonic
    clock; the reset time is told in epoch seconds)."""
    wait = max(1, math.ceil(ends - now))
    headers = {"X-RateLimit-Limit": str(limit.limit), "X-RateLimit-Remaining": "0",
               "X-RateLimit-Reset": str(int(time.time()) + wait), "Retry-After": str(wait)}
    return ApiError(429, "Rate limit exceeded", headers=headers, limit=limit.limit, period=limit.period,
                    retry_after=wait)


def client_of(request, credential: Optional[str]) -> str:
    """The bucket's owner: the valid credential, else the address (see the module's docstring)."""
    return credential if credential is not None else "address:" + (request.remote_ip or "")
