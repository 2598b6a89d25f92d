"""A provider that comes back is used at once: while pools wait after failed clones, the
manager probes the provider through its circuit breaker's half-open trial, and the first success
ends every pool's wait for that provider; /status and the log say which pool waits, why and
until when. The dummy provider fails for real (its failure knobs, switched by the test)."""
import asyncio
import logging
import time

from tests.conftest import add_vm
from tests.manager.helpers import events, fast_config, rows, running, states, wait_for
from vmpooler.api.status import build_status
from vmpooler.context import Context
from vmpooler.db import retries
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.manager.breaker import CLOSED
from vmpooler.manager.scheduler import Manager
from vmpooler.model import AttemptKind, Retry
from vmpooler.providers.base import TransientError
from vmpooler.providers.registry import REGISTRY

POOLS = [{"name": "a", "template": "t", "size": 3}, {"name": "b", "template": "t", "size": 2}]
#: a long backoff cap, a short breaker: without the probe a pool would wait up to a minute
SETTINGS = {"retry_backoff": 1, "retry_backoff_max": 60, "circuit_breaker_failure_threshold": 3,
            "circuit_breaker_timeout": 0.5, "circuit_breaker_half_open_attempts": 2, "check_loop_delay_min": 0.05,
            "reconcile_interval": 3600, "clone_attempts": 1000}
DOWN = {"createvm_fail_percent": 100, "listvms_fail_percent": 100}
UP = {"createvm_fail_percent": 0, "listvms_fail_percent": 0}


def test_pools_refill_within_seconds_of_the_provider_coming_back(db, caplog):
    caplog.set_level(logging.INFO, logger="vmpooler")
    config = fast_config(POOLS, SETTINGS, dummy=DOWN)

    async def scenario():
        async with running(config, db) as (manager, dummy):
            clock = manager.clock
            # the outage lasts until pool a's own backoff reaches past 10 s from now
            await wait_for(lambda: "a" in manager.backoffs.waits
                           and manager.backoffs.waits["a"].until - clock.monotonic() > 10,
                           timeout=30, what="a long backoff")
            wait = manager.backoffs.waits["a"]
            assert wait.failures >= 4 and "clones failed in a row: dummy: simulated clone failure" in wait.reason
            status = await build_status(Context(config=config, db=db, pool_waits=manager.backoffs.describe),
                                        frozenset({"pools", "status"}))
            shown = status["pools"]["a"]["waiting"]
            assert shown["provider"] == "dummy" and shown["failures"] >= wait.failures  # more may fail meanwhile
            assert shown["until"].endswith("+00:00") and "clones failed in a row" in shown["reason"]
            assert shown["waiting_for"] in ("backoff", "circuit breaker")
            assert states(db, "a").get("ready", 0) == 0

            dummy.knobs.update(UP)  # the provider is back
            back_at, waited_until = time.monotonic(), wait.until
            await wait_for(lambda: states(db, "a").get("ready", 0) == 3 and states(db, "b").get("ready", 0) == 2,
                           timeout=8, what="both pools refilled")
            refilled_in = time.monotonic() - back_at
            assert refilled_in < 8 and time.monotonic() < waited_until  # not waited out
            assert manager.runner.breakers["dummy"].state == CLOSED
            assert manager.backoffs.describe() == {}
            return refilled_in

    refilled_in = asyncio.run(scenario())
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("[a] no new clones for ") and " UTC, or until provider dummy answers again" in m
               for m in messages)
    assert any(m.startswith("provider dummy answers again") for m in messages)
    print(f"refilled {refilled_in:.2f} s after the provider came back")


def test_the_breaker_closing_ends_every_pools_wait_and_a_pool_failing_alone_keeps_its_own(db):
    """The breaker's trial calls succeeding end the wait of every pool of the provider; a clone
    succeeding ends only its own pool's (another pool may fail alone: test_slots.py). A manager
    that runs no passes (not started), so that only the test's calls move the breaker."""
    config = fast_config(POOLS, {**SETTINGS, "retry_backoff": 60}, dummy=UP)

    async def scenario():
        manager = Manager(config, db, REGISTRY.build(config))
        pools, breaker = manager.pools, manager.runner.breakers["dummy"]
        for pool in ("a", "b", "b"):
            manager.backoffs.failed(pools[pool], TransientError("down"))
        manager.backoffs.succeeded("a")
        assert not manager.backoffs.waiting("a") and manager.backoffs.waiting("b")
        for _ in range(3):
            breaker.failure()
        await wait_for(lambda: breaker.allow(), what="the breaker's trial")  # half-open after 0.5 s
        breaker.success()
        assert manager.backoffs.waiting("b")
        breaker.success()  # the second trial success closes it
        assert breaker.state == CLOSED and not manager.backoffs.waits
        await asyncio.gather(*manager.in_flight.values())  # the retries brought forward (none here)
        manager.runner.shutdown(wait=True)

    asyncio.run(scenario())


def test_retries_waiting_in_the_database_are_due_when_the_provider_is_back(db):
    config = fast_config(POOLS)
    name = add_vm(db, config.pools_by_name["a"], "pending")
    vm = rows(db, name=name)[0]
    later = utcnow().replace(year=utcnow().year + 1)
    assert vm_store.attempt_failed(db, vm, AttemptKind.CLONE, "down", utcnow(), Retry(1, later))
    assert retries.retry_now(db, "dummy", utcnow(), "provider dummy answers again", 0) == 0  # no free slot
    assert retries.retry_now(db, "dummy", utcnow(), "provider dummy answers again", 5) == 1
    assert rows(db, name=name)[0].next_attempt_at <= utcnow()
    assert events(db, name)[-1].reason == "provider dummy answers again"
