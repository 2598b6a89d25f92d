"""The manager's clocks, and the watch for steps of the wall clock.

Delays, backoffs and timers are measured on the monotonic clock (``Clock.monotonic``), which no
step of the wall clock moves. The wall clock (``Clock.wall``, UTC) says what time it is for rows
(``expires_at``, ``ready_at``): before a pass destroys VMs for their lifetime, ``ready_ttl`` or
pending ``timeout``, ``StepWatch`` compares how far the wall clock moved since the last pass with
how much time really passed (``Clock.elapsed``: CLOCK_BOOTTIME, which also counts a suspended
machine's sleep, so waking up is no step). A step of more than ``STEP_TOLERANCE`` seconds is
logged as an error and the pass destroys nothing for time; the next pass decides with the clock
confirmed (two readings that agree). Tests inject the functions.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from typing import Callable, Optional

from vmpooler.db.database import utcnow

log = logging.getLogger("vmpooler.manager")

#: seconds the wall clock may drift from the elapsed time between two passes before it is a step
STEP_TOLERANCE = 60.0


def _elapsed() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


@dataclasses.dataclass(frozen=True)
class Clock:
    wall: Callable[[], datetime.datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic
    elapsed: Callable[[], float] = _elapsed


class StepWatch:
    """Tells whether the wall clock can be trusted for destroying VMs in this pass."""

    def __init__(self, clock: Clock, tolerance: float = STEP_TOLERANCE):
        self.clock, self.tolerance = clock, tolerance
        self._last: Optional[tuple] = None  # (wall, elapsed) at the last pass
        self.last_step: Optional[float] = None  # seconds of the last step seen, for /status and tests

    def confirmed(self, wall: datetime.datetime) -> bool:
        """False when ``wall`` (this pass's time) stepped more than the tolerance away from the
        time elapsed since the last pass; logged as an error. The first pass has nothing to compare
        with and is taken as confirmed."""
        elapsed = self.clock.elapsed()
        last, self._last = self._last, (wall, elapsed)
        if last is None:
            return True
        step = (wall - last[0]).total_seconds() - (elapsed - last[1])
        if abs(step) <= self.tolerance:
            return True
        self.last_step = step
        log.error("the wall clock stepped %s by %.0f s since the last pass (%s -> %s UTC in %.1f s): this pass "
                  "destroys no VM for its lifetime, ready_ttl or timeout; the next pass decides with the clock "
                  "confirmed", "forward" if step > 0 else "back", abs(step), f"{last[0]:%Y-%m-%d %H:%M:%S}",
                  f"{wall:%Y-%m-%d %H:%M:%S}", elapsed - last[1])
        return False
