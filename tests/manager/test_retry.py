"""The one retry policy (manager/retry.py): backoff, cap and attempt limits, and an open circuit
breaker that is not an attempt: work refused during a provider outage waits, then is done."""
import asyncio
import collections
import datetime

from sqlalchemy import select

from tests.conftest import FakeClock
from tests.manager.helpers import events, fast_config, rows, running, states, wait_for
from vmpooler.db import tasks as task_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.db.models import tasks
from vmpooler.manager.breaker import CircuitBreaker
from vmpooler.manager.retry import RetryPolicy
from vmpooler.model import AttemptKind, BreakerState, Retry
from vmpooler.providers.base import CircuitOpen, PermanentError, TransientError

POOL = {"name": "a", "template": "tmpl-a", "size": 1}
NOW = datetime.datetime(2026, 1, 1, 12, 0, 0)
CLONE, DESTROY, TASK = AttemptKind.CLONE, AttemptKind.DESTROY, AttemptKind.TASK


def policy(wait=7.0):
    return RetryPolicy(2, 10, {CLONE: 3, DESTROY: 5, TASK: 2}, lambda provider: wait)


def test_backoff_doubles_up_to_the_cap():
    assert [policy().backoff(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]


def test_backoff_after_thousands_of_failures_is_the_cap_not_an_overflow():
    assert policy().backoff(5000) == 10


def test_transient_failures_are_retried_until_the_kind_limit():
    first = policy().after(CLONE, TransientError("x"), 0, "p", NOW)
    assert first.attempts == 1 and first.at == NOW + datetime.timedelta(seconds=2) and not first.gives_up
    assert policy().after(CLONE, TransientError("x"), 1, "p", NOW).at == NOW + datetime.timedelta(seconds=4)
    last = policy().after(CLONE, TransientError("x"), 2, "p", NOW)
    assert last.attempts == 3 and last.gives_up
    assert not policy().after(DESTROY, TransientError("x"), 3, "p", NOW).gives_up
    assert policy().after(TASK, TransientError("x"), 1, "p", NOW).gives_up


def test_a_permanent_failure_gives_up_at_once():
    retry = policy().after(DESTROY, PermanentError("no"), 0, "p", NOW)
    assert retry.attempts == 1 and retry.gives_up


def test_an_open_breaker_is_no_attempt_and_waits_for_the_breaker():
    for kind in (CLONE, DESTROY, TASK):
        retry = policy(wait=7.0).after(kind, CircuitOpen("open"), 2, "p", NOW)
        assert retry.attempts == 2 and retry.at == NOW + datetime.timedelta(seconds=7)


def test_the_breaker_says_when_it_lets_calls_through_again():
    clock = FakeClock()
    breaker = CircuitBreaker("p", threshold=1, timeout=30, clock=clock)
    assert breaker.seconds_until_trial() == 0
    breaker.failure()
    clock.now += 10
    assert breaker.seconds_until_trial() == 20 and not breaker.allow()
    clock.now += 20
    assert breaker.seconds_until_trial() == 0 and breaker.allow()


# --- a provider outage, with the manager running ------------------------------------------
def outage(manager):
    """Open the dummy provider's breaker on a clock that stands still until the outage ends, and
    count the calls it refuses by method. Returns (clock, refusals)."""
    clock = FakeClock()
    breaker = CircuitBreaker("dummy", threshold=1, timeout=0.02, half_open_successes=1, clock=clock)
    manager.runner.breakers["dummy"] = breaker
    refused = collections.Counter()
    call = manager.runner.call

    async def counting(provider, operation):
        try:
            return await call(provider, operation)
        except CircuitOpen:
            refused[_method(operation)] += 1
            raise
    manager.runner.call = counting
    breaker.failure()
    return clock, refused


class _Recorder:
    """Stands in for a provider to learn which method an operation calls, calling nothing."""

    def __getattr__(self, name):
        self.called = name
        return lambda *args: None


def _method(operation) -> str:
    recorder = _Recorder()
    operation(recorder)
    return recorder.called


def _task(db, task_id):
    with db.read() as conn:
        return conn.execute(select(tasks).where(tasks.c.id == task_id)).first()


def test_a_task_queued_during_an_outage_is_done_after_it(db):
    # ready checks far apart: a check refused every pass would hold the VM (one provider call at a time)
    config = fast_config([POOL], settings={"task_attempts": 2, "vm_checktime": 10})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 1)
            vm = rows(db, state="ready")[0]
            clock, refused = outage(manager)
            task_id = task_store.queue(db, vm, "snapshot", "snap1", utcnow())
            await wait_for(lambda: refused["create_snapshot"] > 3 * 2, what="refusals beyond task_attempts")
            # between refused runs the task is queued again (a run claims it for a moment)
            await wait_for(lambda: _task(db, task_id).state == "queued", what="the task back in the queue")
            assert _task(db, task_id).attempts == 0
            clock.now += 1  # the outage is over: the breaker lets trial calls through
            await wait_for(lambda: _task(db, task_id).state == "done", what="the snapshot")
            assert "snap1" in dummy.get_vm(None, vm.name).extra["snapshots"]
    asyncio.run(scenario())
    assert _task(db, 1).attempts == 0


def test_clones_and_destroys_keep_their_attempts_while_the_breaker_is_open(db):
    config = fast_config([{**POOL, "size": 2}], settings={"clone_attempts": 1, "destroy_attempts": 1})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 2)
            clock, refused = outage(manager)
            retired = rows(db, state="ready")[0]
            assert vm_store.complete(db, retired, "test: retired during the outage", utcnow())
            await wait_for(lambda: refused["destroy_vm"] > 3 and refused["create_vm"] > 3,
                           what="refusals beyond the attempt limits")
            assert rows(db, name=retired.name)[-1].state == "completed"
            assert [r.state for r in rows(db) if r.cloned_at is None] == ["pending"]
            assert all(r.clone_attempts == 0 and r.destroy_attempts == 0 for r in rows(db))
            clock.now += 1
            await wait_for(lambda: states(db).get("ready") == 2 and states(db).get("destroyed") == 1)
            return retired.name
    name = asyncio.run(scenario())
    assert all(r.clone_attempts == 0 and r.destroy_attempts == 0 for r in rows(db))
    assert any("destroy waits for the provider's circuit breaker" in e.reason for e in events(db, name))
    replacement = [r for r in rows(db) if r.name != name and r.id > 2][0]
    assert any("clone waits for the provider's circuit breaker" in e.reason for e in events(db, replacement.name))


def test_each_attempt_kind_carries_its_column_guard_and_give_up_state():
    """The kinds are a type: what a failed attempt counts in, the state it is guarded by and the
    state its work is given up to travel with the kind, and the policy has a limit for each."""
    assert [(kind.value, kind.column, kind.works_on, kind.gives_up_to) for kind in AttemptKind] == [
        ("clone", "clone_attempts", "pending", "completed"), ("destroy", "destroy_attempts", "completed", "failed"),
        ("task", "attempts", "running", "failed")]
    assert f"{CLONE} failed" == "clone failed" and CLONE == "clone"
    from vmpooler.db import vm_statements
    from vmpooler.db.models import tasks as task_table, vms as vm_table
    assert set(vm_statements.ATTEMPT_GUARDS) == {CLONE, DESTROY}
    assert {CLONE.column, DESTROY.column} <= set(vm_table.c.keys()) and TASK.column in task_table.c
    limits = RetryPolicy.from_settings(fast_config([POOL]).settings, {}).limits
    assert set(limits) == set(AttemptKind)


def test_a_breaker_refusal_says_so():
    retry = policy().after(DESTROY, CircuitOpen("open"), 1, "p", NOW)
    assert retry.waits_for_breaker and retry == Retry(1, retry.at, waits_for_breaker=True)
    assert not policy().after(DESTROY, TransientError("x"), 1, "p", NOW).waits_for_breaker
