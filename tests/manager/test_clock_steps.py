"""Steps of the wall clock: the manager's wall clock is injected (``Clock(wall=...)``, the
function every pass reads its time from) and stepped by the test, while its monotonic and elapsed
clocks run for real. A pass that sees a step of more than a minute destroys nothing for a VM's
lifetime, ready_ttl or timeout and logs an error; the next decides with the clock confirmed. A
step back freezes no retry: timers run on the monotonic clock, and a retry set further ahead than
any backoff can be is due."""
import asyncio
import datetime
import logging

from sqlalchemy import select

from tests.manager.helpers import fast_config, states, wait_for
from vmpooler.db import ondemand as requests_db
from vmpooler.db import checkout as checkout_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.db.models import ondemand_requests, vm_events
from vmpooler.manager.clock import Clock, StepWatch
from vmpooler.manager.scheduler import Manager
from vmpooler.model import OD_FAILED, OD_PENDING
from vmpooler.providers.registry import REGISTRY

POOLS = [{"name": "a", "template": "t", "size": 3, "ready_ttl": 60}]


class SteppedWall:
    """The wall clock, off by ``offset`` when the test steps it."""

    def __init__(self):
        self.offset = datetime.timedelta(0)

    def __call__(self) -> datetime.datetime:
        return utcnow() + self.offset


def destroyed_for_time(db) -> list:
    """Events of VMs retired for their lifetime, ready_ttl or timeout."""
    with db.read() as conn:
        reasons = [row.reason for row in conn.execute(select(vm_events.c.reason))]
    return [r for r in reasons if r.startswith(("reached the end of its lifetime", "ready for more than",
                                                "still pending after"))]


def request_state(db, request_id):
    with db.read() as conn:
        return conn.execute(select(ondemand_requests.c.state).where(
            ondemand_requests.c.request_id == request_id)).scalar()


def test_a_forward_step_destroys_nothing_until_the_clock_is_confirmed(db, caplog):
    caplog.set_level(logging.ERROR, logger="vmpooler.manager")
    wall = SteppedWall()
    # passes are run by the test; one on-demand clone per pass, so that the request stays unfilled
    config = fast_config(POOLS, {"check_loop_delay_min": 3600, "vm_checktime": 600, "ondemand_clone_limit": 1})
    providers = REGISTRY.build(config)

    async def scenario():
        manager = Manager(config, db, providers, clock=Clock(wall=wall))
        await manager.start()
        try:
            await wait_for(lambda: states(db, "a").get("ready") == 3, what="the pool full")
            held = checkout_store.checkout(db, [checkout_store.Want("a", ("a",), 1)], utcnow(), 24)["a"][0].name
            requests_db.create(db, "waiting-request", [("a", "a", 20)], utcnow())
            await manager.run_pass()
            assert manager.step_watch.last_step is None

            wall.offset = datetime.timedelta(hours=25)  # the wall clock jumps a day and an hour ahead
            await manager.run_pass()
            assert 25 * 3600 - 120 < manager.step_watch.last_step < 25 * 3600 + 120
            assert destroyed_for_time(db) == []  # not the running VM, not the ready ones
            assert vm_store.latest(db, held).state == "running"
            assert request_state(db, "waiting-request") == OD_PENDING
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1 and errors[0].startswith("the wall clock stepped forward by 9000")
            assert "destroys no VM for its lifetime, ready_ttl or timeout" in errors[0]

            # the next pass sees the clock agree with the time elapsed: it is confirmed, and now it
            # is a day later for real as far as the manager knows, so it retires what is due
            await manager.run_pass()
            await wait_for(lambda: vm_store.latest(db, held).state != "running", what="the lifetime to end")
            reasons = destroyed_for_time(db)
            assert "reached the end of its lifetime" in reasons
            assert sum(r.startswith("ready for more than 60 minutes") for r in reasons) >= 2
            assert request_state(db, "waiting-request") == OD_FAILED
        finally:
            await manager.stop()

    asyncio.run(scenario())


def test_a_backward_step_destroys_nothing_and_freezes_no_retry(db, caplog):
    caplog.set_level(logging.ERROR, logger="vmpooler.manager")
    wall = SteppedWall()
    settings = {"retry_backoff": 0.3, "retry_backoff_max": 0.6, "check_loop_delay_min": 0.05,
                "clone_attempts": 1000, "circuit_breaker_enabled": False}
    config = fast_config(POOLS, settings, dummy={"createvm_fail_percent": 100})
    providers = REGISTRY.build(config)

    async def scenario():
        manager = Manager(config, db, providers, clock=Clock(wall=wall))
        await manager.start()
        try:
            # clones fail: the pool's VMs wait for their retry (next_attempt_at, wall clock, in the
            # database), the pool for its backoff (monotonic)
            await wait_for(lambda: any(vm.next_attempt_at for vm in vm_store.pending(db)), what="a retry waiting")
            wall.offset = -datetime.timedelta(hours=2)  # the wall clock steps back two hours
            providers["dummy"].knobs["createvm_fail_percent"] = 0  # and the provider works again
            await wait_for(lambda: states(db, "a").get("ready") == 3, timeout=10,
                           what="the pool filled by retries set two hours 'ahead' of the stepped clock")
        finally:
            await manager.stop()

    asyncio.run(scenario())
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(e.startswith("the wall clock stepped back by 7200") for e in errors)
    assert destroyed_for_time(db) == []


def test_small_drift_is_no_step():
    elapsed = [0.0]
    wall = [datetime.datetime(2026, 12, 6, 12, 0, 0)]
    watch = StepWatch(Clock(wall=lambda: wall[0], elapsed=lambda: elapsed[0]))
    assert watch.confirmed(wall[0])
    elapsed[0], wall[0] = 30.0, wall[0] + datetime.timedelta(seconds=75)  # 45 s of drift: tolerated
    assert watch.confirmed(wall[0])
    elapsed[0], wall[0] = 40.0, wall[0] + datetime.timedelta(seconds=80)  # 70 s ahead of 10 s elapsed
    assert not watch.confirmed(wall[0]) and round(watch.last_step) == 70
    elapsed[0], wall[0] = 45.0, wall[0] + datetime.timedelta(seconds=5)  # agrees again
    assert watch.confirmed(wall[0])
