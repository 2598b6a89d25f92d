"""How many VMs each pool had ready and running over a recent window, rebuilt from the event log.

No samples are stored: every state change writes a ``vm_events`` row in its own transaction, so
the count of a state at any past moment is the count now minus the changes since. The database
groups the window's events into (pool, step) net changes, so a read costs one range scan of the
``at`` index and returns at most pools x steps rows, whatever the number of VMs.
"""
from __future__ import annotations

import calendar
import dataclasses
import datetime

from sqlalchemy import Integer, and_, bindparam, case, cast, extract, func, or_, select

from vmpooler.db.models import READY, RUNNING, vm_events

TRACKED = (READY, RUNNING)


def _net_change(state: str):
    """+1 for an event that enters ``state``, -1 for one that leaves it, 0 otherwise (an event
    from a state to itself, such as a retry, changes no count)."""
    entered = and_(vm_events.c.to_state == state, or_(vm_events.c.from_state.is_(None),
                                                        vm_events.c.from_state != state))
    left = and_(vm_events.c.from_state == state, vm_events.c.to_state != state)
    return func.sum(case((entered, 1), (left, -1), else_=0))


# whole seconds since the epoch (naive UTC on both databases), counted from the window's start
_STEP_OF_EVENT = ((cast(extract("epoch", vm_events.c.at), Integer) - bindparam("start_epoch", type_=Integer))
                  // bindparam("step", type_=Integer)).label("step_index")
_NET_CHANGES = (select(vm_events.c.pool, _STEP_OF_EVENT, *(_net_change(state) for state in TRACKED))
                .where(vm_events.c.at >= bindparam("start"),
                       or_(vm_events.c.to_state.in_(TRACKED), vm_events.c.from_state.in_(TRACKED)))
                .group_by(vm_events.c.pool, _STEP_OF_EVENT))


@dataclasses.dataclass(frozen=True)
class Window:
    """``steps`` intervals of ``step`` seconds that end at ``end``."""

    end: datetime.datetime
    steps: int = 60
    step: int = 60

    @property
    def start(self) -> datetime.datetime:
        end = self.end.replace(microsecond=0)
        return end - datetime.timedelta(seconds=self.steps * self.step)


def state_history(conn, window: Window, current: dict) -> dict:
    """{pool: {"ready": [...], "running": [...]}}: the count at the end of each step of the
    window, oldest first, the last being ``current`` ({pool: {state: count}}, read in the same
    transaction). Pools without events in the window keep their current count throughout.
    Events written after ``window.end`` fall into its last step, so the series ends at ``current``."""
    start = window.start
    changes = {}  # pool -> step -> (ready change, running change)
    for pool, index, *deltas in conn.execute(_NET_CHANGES, {"start": start, "step": window.step,
                                                              "start_epoch": calendar.timegm(start.timetuple())}):
        index = min(max(int(index), 0), window.steps - 1)
        steps = changes.setdefault(pool, {})
        previous = steps.get(index, (0,) * len(TRACKED))
        steps[index] = tuple(old + int(new or 0) for old, new in zip(previous, deltas))
    result = {}
    for pool in set(current) | set(changes):
        now_counts = current.get(pool, {})
        result[pool] = {state: _backwards(now_counts.get(state, 0), changes.get(pool, {}), column, window.steps)
                        for column, state in enumerate(TRACKED)}
    return result


def _backwards(count_now: int, steps: dict, column: int, length: int) -> list:
    """Walk from the newest step back: the count at the end of step i is the count at the end
    of step i+1 minus what step i+1 changed. Never below 0 (a database older than the event
    log's completeness could otherwise make it so)."""
    series = [0] * length
    count = count_now
    for index in range(length - 1, -1, -1):
        series[index] = max(count, 0)
        count -= steps.get(index, (0,) * len(TRACKED))[column]
    return series
