"""The manager's whole lifecycle on the dummy provider, with millisecond timers."""
import asyncio
import datetime
from types import SimpleNamespace

import pytest
from sqlalchemy import update

from tests.manager.helpers import events, fast_config, rows, running, states, wait_for
from vmpooler.db.models import vms
from vmpooler.manager import checks
from vmpooler.providers.registry import REGISTRY

POOL = {"name": "a", "template": "tmpl-a", "size": 3}


def run(coroutine):
    return asyncio.run(coroutine)


def test_pools_fill_to_size_and_stay_full(db):
    config = fast_config([POOL, {"name": "b", "template": "tmpl-b", "size": 2}])

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db, "a").get("ready") == 3 and states(db, "b").get("ready") == 2)
            await asyncio.sleep(0.1)
            assert states(db, "a") == {"ready": 3} and states(db, "b") == {"ready": 2}
            assert len(dummy.names()) == 5
    run(scenario())
    first = rows(db, pool="a")[0]
    assert [e.to_state for e in events(db, first.name)] == ["pending", "pending", "ready"]
    assert first.cloned_at and first.ready_at and len(first.name) <= 15


def test_prefix_is_applied_to_hostnames(db):
    config = fast_config([POOL], settings={"prefix": "ci-"})

    async def scenario():
        async with running(config, db):
            await wait_for(lambda: states(db).get("ready") == 3)
    run(scenario())
    assert all(row.name.startswith("ci-") and len(row.name) <= 18 for row in rows(db))


def test_task_limit_bounds_clones_in_flight(db):
    config = fast_config([{**POOL, "size": 12}], settings={"task_limit": 2}, dummy={"createvm_max_time": 0.05})
    peak = 0

    async def scenario():
        nonlocal peak
        async with running(config, db) as (manager, dummy):
            while states(db).get("ready", 0) < 12:
                cloning = sum(1 for r in rows(db, state="pending") if r.cloned_at is None)
                peak = max(peak, cloning)
                await asyncio.sleep(0.005)
    run(scenario())
    assert 1 <= peak <= 2


def test_pending_vm_times_out_with_its_cause_as_a_warning(db, caplog):
    # boot never completes within the 0.02-minute (1.2 s) timeout, while the clone is at once; the
    # cause is what the provider's readiness probe said
    cause = "not booted yet"
    config = fast_config([{**POOL, "size": 1, "timeout": 0.02}], dummy={"boot_max_time": 3600, "createvm_max_time": 0})

    async def scenario():
        async with running(config, db):
            await wait_for(lambda: states(db).get("completed", 0) + states(db).get("destroyed", 0) >= 1)
    with caplog.at_level("INFO"):
        run(scenario())
    victim = (rows(db, state="destroyed") + rows(db, state="completed"))[0]
    assert "timed out" in victim.last_error and cause in victim.last_error
    assert any(e.reason == f"still pending after 0.02 minutes: {cause}" for e in events(db, victim.name))
    logged = [r for r in caplog.records if "still pending after" in r.getMessage() and victim.name in r.getMessage()]
    assert logged and all(r.levelname == "WARNING" for r in logged), [(r.levelname, r.getMessage()) for r in logged]


def test_the_pending_timeout_names_a_clone_that_never_finished_and_a_probe_never_answered():
    manager = SimpleNamespace(not_ready={7: "its port 22 on 10.0.0.5 never opened"})
    assert checks._pending_cause(manager, SimpleNamespace(id=7, cloned_at=None)) == "its clone never finished"
    assert checks._pending_cause(manager, SimpleNamespace(id=7, cloned_at=1)) == "its port 22 on 10.0.0.5 never opened"
    assert checks._pending_cause(manager, SimpleNamespace(id=7, cloned_at=1)) == "it never answered its readiness probe"


def test_ready_ttl_recycles_ready_vms(db):
    config = fast_config([{**POOL, "size": 1, "ready_ttl": 0.003}])  # 180 ms

    async def scenario():
        async with running(config, db):
            await wait_for(lambda: states(db).get("destroyed", 0) >= 2)
            await wait_for(lambda: states(db).get("ready") == 1)
    run(scenario())
    recycled = rows(db, state="destroyed")[0]
    assert any("ready for more than" in e.reason for e in events(db, recycled.name))


def test_ready_vm_failing_its_check_is_recycled(db):
    config = fast_config([{**POOL, "size": 1}])

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 1)
            name = rows(db, state="ready")[0].name
            dummy.knobs["getvm_poweroff_percent"] = 100
            await wait_for(lambda: rows(db, name=name)[0].state in ("completed", "destroyed"))
            dummy.knobs["getvm_poweroff_percent"] = 0
            return name
    name = run(scenario())
    assert rows(db, name=name)[0].last_error == "powered off"


def test_running_vm_expires_after_its_lifetime(db):
    config = fast_config([{**POOL, "size": 1}])

    async def scenario():
        async with running(config, db):
            await wait_for(lambda: states(db).get("ready") == 1)
            name = rows(db, state="ready")[0].name
            past = datetime.datetime.utcnow() - datetime.timedelta(seconds=1)
            with db.write() as conn:  # checked out long ago, lifetime over
                conn.execute(update(vms).where(vms.c.name == name)
                             .values(state="running", checkout_at=past, expires_at=past))
            await wait_for(lambda: rows(db, name=name)[0].state == "destroyed")
            await wait_for(lambda: states(db).get("ready") == 1)
            return name
    name = run(scenario())
    assert any("end of its lifetime" in e.reason for e in events(db, name))


#: a clone given up is completed, then destroyed, or marked gone by a reconcile that finds no such VM
GIVEN_UP = ("completed", "destroyed", "gone")


def test_clone_failures_are_retried_then_capped(db):
    config = fast_config([{**POOL, "size": 1}], settings={"clone_attempts": 3},
                         dummy={"createvm_fail_percent": 100})

    async def scenario():
        async with running(config, db):
            await wait_for(lambda: any(r.state in GIVEN_UP for r in rows(db)))
    run(scenario())
    given_up = [r for r in rows(db) if r.state in GIVEN_UP][0]
    assert given_up.clone_attempts == 3
    assert "simulated clone failure" in given_up.last_error
    reasons = [e.reason for e in events(db, given_up.name)]
    assert sum("retrying" in r for r in reasons) == 2
    assert sum("giving up" in r for r in reasons) == 1


def test_destroy_failures_are_retried_then_marked_failed(db):
    config = fast_config([{**POOL, "size": 1}], settings={"destroy_attempts": 2},
                         dummy={"destroyvm_fail_percent": 100})

    async def scenario():
        async with running(config, db):
            await wait_for(lambda: states(db).get("ready") == 1)
            vm = rows(db, state="ready")[0]
            with db.write() as conn:
                conn.execute(update(vms).where(vms.c.id == vm.id).values(state="completed"))
            await wait_for(lambda: rows(db, name=vm.name)[0].state == "failed")
            return vm.name
    name = run(scenario())
    failed = rows(db, name=name)[0]
    assert failed.destroy_attempts == 2 and "simulated destroy failure" in failed.last_error


def test_one_failing_pool_does_not_stall_the_others(db):
    config = fast_config([{"name": "bad", "template": "t", "size": 5, "provider": "flaky"},
                          {"name": "good", "template": "t", "size": 4}],
                         settings={"task_limit": 2, "clone_attempts": 100},
                         providers={"dummy": {}, "flaky": {"provider_class": "dummy", "createvm_fail_percent": 100}})

    async def scenario():
        async with running(config, db):
            await wait_for(lambda: states(db, "good").get("ready") == 4, timeout=10)
    run(scenario())


def test_shrinking_a_pool_removes_the_excess(db):
    big = fast_config([{**POOL, "size": 5}])
    small = fast_config([{**POOL, "size": 2}])
    providers = REGISTRY.build(big)  # one inventory across the restart

    async def scenario():
        async with running(big, db, providers):
            await wait_for(lambda: states(db).get("ready") == 5)
        async with running(small, db, providers):
            await wait_for(lambda: states(db).get("ready") == 2 and states(db).get("destroyed") == 3)
    run(scenario())


def test_tasks_snapshot_revert_and_disk_are_carried_out(db):
    from vmpooler.db.tasks import queue as queue_task
    from vmpooler.db.database import utcnow

    config = fast_config([{**POOL, "size": 1}])

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 1)
            vm = rows(db, state="ready")[0]
            queue_task(db, vm, "snapshot", "snap1", utcnow())
            queue_task(db, vm, "disk", "8", utcnow())
            await wait_for(lambda: "snap1" in dummy.get_vm(None, vm.name).extra["snapshots"])
            queue_task(db, vm, "revert", "snap1", utcnow())
            queue_task(db, vm, "revert", "nope", utcnow())
            await wait_for(lambda: _task_states(db) == {"done": 3, "failed": 1})
            assert dummy.get_vm(None, vm.name).extra["disks"] == ["+8gb"]
    run(scenario())


def _task_states(db):
    from sqlalchemy import select

    from vmpooler.db.models import tasks
    with db.read() as conn:
        result = {}
        for (state,) in conn.execute(select(tasks.c.state)):
            result[state] = result.get(state, 0) + 1
        return result


def test_stop_abandons_slow_work_cleanly_and_restart_resolves_it(db):
    config = fast_config([{**POOL, "size": 2}], settings={"shutdown_grace": 0.05}, dummy={"createvm_max_time": 0.5})

    async def first():
        async with running(config, db):
            await wait_for(lambda: states(db).get("pending") == 2)
    run(first())
    fast = fast_config([{**POOL, "size": 2}])

    async def second():
        async with running(fast, db):
            await wait_for(lambda: states(db).get("ready") == 2, timeout=10)
    run(second())


@pytest.mark.parametrize("state", ["ready", "running"])
def test_circuit_breaker_opens_on_failures_and_recovers(db, state):
    config = fast_config([{**POOL, "size": 2}], settings={"circuit_breaker_failure_threshold": 2,
                                                           "circuit_breaker_timeout": 0.1,
                                                           "circuit_breaker_half_open_attempts": 1})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 2)
            dummy.knobs["listvms_fail_percent"] = 100
            dummy.knobs["createvm_fail_percent"] = 100
            vm = rows(db, state="ready")[0]
            with db.write() as conn:
                conn.execute(update(vms).where(vms.c.id == vm.id).values(state="completed"))
            await wait_for(lambda: manager.runner.breakers["dummy"].state == "open")
            dummy.knobs["listvms_fail_percent"] = 0
            dummy.knobs["createvm_fail_percent"] = 0
            await wait_for(lambda: manager.runner.breakers["dummy"].state == "closed")
            await wait_for(lambda: states(db).get("ready") == 2)
    run(scenario())
