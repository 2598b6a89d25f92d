"""How many VMs each pool had ready and running over a recent window, rebuilt from the event log.

No samples are stored: every state change writes a ``vm_events`` row in its own transaction, so
the count of a state at any past moment is the count now minus the changes since. The database
groups the window's events into net changes per pool and step (whole minutes since the epoch),
counting the VMs each state counts in /status (on-demand VMs waiting in ready are not the pool's
ready VMs), so a read returns at most pools x steps rows, whatever the number of VMs. An hour of
heavy churn is still a scan of many rows, so ``ChangeCache`` keeps the grouped changes of all but
the last seconds and reads only the events since: one full scan per minute, however many
dashboards ask.
"""
from __future__ import annotations

import calendar
import dataclasses
import datetime
from typing import Optional

from sqlalchemy import Integer, and_, bindparam, case, cast, extract, func, or_, select

from vmpooler.db.database import Database
from vmpooler.db.models import vm_events, vms
from vmpooler.db.stats import NO_VMS
from vmpooler.model import READY, RUNNING, VMState

TRACKED = (READY, RUNNING)
#: the VMs each tracked state counts, as /status counts them (stats.pool_counts): a VM cloned for an
#: on-demand request (``want_id``) waits in ready for its siblings but is not the pool's stock, so
#: ready counts only the pool's own VMs; running counts every VM. The on-demand VMs are few: their
#: ids are looked up once per query (an uncorrelated IN), not a join of every event to its VM row.
COUNTED = {READY: vm_events.c.vm_id.not_in(select(vms.c.id).where(vms.c.want_id.is_not(None)).scalar_subquery()),
           RUNNING: None}


def epoch_seconds(when: datetime.datetime) -> int:
    return calendar.timegm(when.timetuple())


def _net_change(state: VMState):
    """+1 for an event that enters ``state``, -1 for one that leaves it, 0 otherwise (an event
    from a state to itself, such as a retry, changes no count; so does one of a VM the state does
    not count, see ``COUNTED``)."""
    entered = and_(vm_events.c.to_state == state, or_(vm_events.c.from_state.is_(None),
                                                        vm_events.c.from_state != state))
    left = and_(vm_events.c.from_state == state, vm_events.c.to_state != state)
    only = COUNTED[state]
    if only is not None:
        entered, left = and_(entered, only), and_(left, only)
    return func.sum(case((entered, 1), (left, -1), else_=0))


def _changes_statement(bounded: bool):
    """Net changes of the tracked states per pool and step, for events at or after ``since``
    (and before ``until`` when ``bounded``). Steps are whole seconds since the epoch (naive UTC
    on both databases) divided by ``step``: non-negative, so integer division is floor. SQLite
    drops the fraction of a second and PostgreSQL rounds it, so there an event in a minute's last
    half second counts in the next minute."""
    step = (cast(extract("epoch", vm_events.c.at), Integer) // bindparam("step", type_=Integer)).label("step_index")
    conditions = [vm_events.c.at >= bindparam("since"),
                  or_(vm_events.c.to_state.in_(TRACKED), vm_events.c.from_state.in_(TRACKED))]
    if bounded:
        conditions.append(vm_events.c.at < bindparam("until"))
    return (select(vm_events.c.pool, step, *(_net_change(state) for state in TRACKED))
            .where(*conditions).group_by(vm_events.c.pool, step))


_CHANGES_SINCE, _CHANGES_BETWEEN = _changes_statement(False), _changes_statement(True)


@dataclasses.dataclass(frozen=True)
class Window:
    """``steps`` steps of ``step`` seconds, aligned on multiples of ``step`` since the epoch; the
    last is the one ``end`` falls in (still under way)."""

    end: datetime.datetime
    steps: int = 60
    step: int = 60

    @property
    def last_step(self) -> int:
        return epoch_seconds(self.end) // self.step

    @property
    def first_step(self) -> int:
        return self.last_step - self.steps + 1

    @property
    def start(self) -> datetime.datetime:
        return datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=self.first_step * self.step)


def _read_changes(conn, window: Window, since: datetime.datetime,
                 until: Optional[datetime.datetime] = None) -> dict:
    """{pool: {step: (ready change, running change)}} of the events in [since, until)."""
    statement, values = _CHANGES_SINCE, {"since": since, "step": window.step}
    if until is not None:
        statement, values["until"] = _CHANGES_BETWEEN, until
    changes: dict = {}
    for pool, index, *deltas in conn.execute(statement, values):
        _add(changes.setdefault(pool, {}), int(index), tuple(int(d or 0) for d in deltas))
    return changes


def _add(steps: dict, index: int, deltas: tuple) -> None:
    previous = steps.get(index)
    steps[index] = deltas if previous is None else tuple(a + b for a, b in zip(previous, deltas))


def merged(*parts: dict) -> dict:
    result: dict = {}
    for part in parts:
        for pool, steps in part.items():
            target = result.setdefault(pool, {})
            for index, deltas in steps.items():
                _add(target, index, deltas)
    return result


class ChangeCache:
    """The grouped changes of the window up to ``margin`` seconds before they were read, reused
    for ``ttl`` seconds; each read adds the events since then (a few seconds' worth). Events are
    written with their transaction's time, committed at most moments later: the margin keeps a
    slow commit from being missed. Threads may share it: the kept state is one tuple, replaced whole."""

    def __init__(self, ttl: float = 60, margin: float = 5):
        self.ttl, self.margin = datetime.timedelta(seconds=ttl), datetime.timedelta(seconds=margin)
        self._kept: Optional[tuple] = None  # (step, since, until, changes), replaced whole

    def changes(self, conn, window: Window) -> dict:
        kept = self._kept
        if kept is None or kept[0] != window.step or kept[1] > window.start or window.end - kept[2] > self.ttl:
            until = window.end - self.margin
            kept = self._kept = (window.step, window.start, until, _read_changes(conn, window, window.start, until))
        return merged(kept[3], _read_changes(conn, window, kept[2]))


def state_history(db: Database, window: Window, current: dict, cache: Optional[ChangeCache] = None) -> dict:
    """{pool: {"ready": [...], "running": [...]}}: the count at the end of each step of the
    window, oldest first, the last being ``current`` ({pool: {state: count}}, as stats.pool_counts
    read it just before). A pool without events in the window keeps its current count throughout.
    A change committed between the two reads shifts one past step by one until the next read."""
    with db.read() as conn:
        changes = cache.changes(conn, window) if cache else _read_changes(conn, window, window.start)
    first, last = window.first_step, window.last_step
    result = {}
    for pool in set(current) | set(changes):
        now_counts, steps = current.get(pool, NO_VMS), changes.get(pool, {})
        counted = (now_counts.ready, now_counts.running)  # in the order of TRACKED
        result[pool] = {str(state): _backwards(counted[column], steps, column, first, last)
                        for column, state in enumerate(TRACKED)}
    return result


def _backwards(count_now: int, steps: dict, column: int, first: int, last: int) -> list:
    """Walk from the newest step (``last``) back to ``first``: the count at the end of a step is
    the count at the end of the next one minus what the next one changed. Events after the window
    (written between reading its end and the counts) belong to its last step, so the series ends
    at ``count_now``. Never below 0 (a log that starts inside the window could make it so)."""
    series = [0] * (last - first + 1)
    later = sum(deltas[column] for index, deltas in steps.items() if index > last)
    count = count_now
    for index in range(last, first - 1, -1):
        series[index - first] = max(count, 0)
        deltas = steps.get(index)
        count -= (deltas[column] if deltas else 0) + (later if index == last else 0)
    return series
