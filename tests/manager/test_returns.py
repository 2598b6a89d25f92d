"""A VM a client gives back (DELETE) is destroyed without waiting for a pass (manager/destroy.py:
``Returns``): the destroys of a burst of returns end together and are recorded in one
transaction, a destroy that a pass made meanwhile is not made again, and a manager that may not
act leaves the VM to the next pass."""
import asyncio
import time

from tests.manager.helpers import events, fast_config, running, states, wait_for
from tests.reliability.harness import service_config, wait_until
from tests.service import InProcessService
from vmpooler.db import checkout as checkout_store
from vmpooler.db import client_changes
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.manager import destroy

#: no pass after the first one (30 s apart): whatever happens here is not a pass's doing
NO_PASSES = {"check_loop_delay_min": 30, "check_loop_delay_max": 30, "circuit_breaker_enabled": False}
POOL = [{"name": "a", "template": "t", "size": 3}]


async def _checked_out(db, count: int) -> list:
    taken = await db.run(checkout_store.checkout, [checkout_store.Want("a", ("a",), count)], utcnow(), 24)
    return [vm_store.latest(db, vm.name) for vm in taken["a"]]


async def _one_returned(db):
    """Once the pool is full: a VM checked out and deleted by its client, (as read running, as completed)."""
    await wait_for(lambda: states(db, "a").get("ready") == 3, timeout=30, what="pool full")
    [vm] = await _checked_out(db, 1)
    return vm, await db.run(client_changes.delete, vm, utcnow())


def _counting(manager):
    """Count the manager's passes and the batches its destroys are recorded in."""
    passes, batches = [], []
    original_pass, original_record = manager.run_pass, manager.record_destroy.function

    async def counted_pass():
        passes.append(1)
        await original_pass()

    def counted_record(db, destroys):
        batches.append(len(destroys))
        return original_record(db, destroys)
    manager.run_pass, manager.record_destroy.function = counted_pass, counted_record
    return passes, batches


def test_returned_vms_are_destroyed_together_without_a_pass(db):
    config = fast_config(POOL, settings=NO_PASSES)

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db, "a").get("ready") == 3, timeout=30, what="pool full")
            passes, batches = _counting(manager)
            for vm in await _checked_out(db, 2):
                manager.destroy_soon(await db.run(client_changes.delete, vm, utcnow()))
            await wait_for(lambda: states(db, "a").get("destroyed") == 2, timeout=5, what="both destroyed")
            return passes, batches, dummy
    passes, batches, dummy = asyncio.run(scenario())
    assert passes == [] and batches == [2]  # no pass; both destroys in one transaction
    assert vm_store.live_in_states(db, ("completed",)) == []
    pool = config.pools[0]
    for name in {e.vm_name for e in events(db) if e.to_state == "destroyed"}:
        row = vm_store.latest(db, name)
        assert row.state == "destroyed" and row.live_name is None and dummy.get_vm(pool, name) is None


def test_a_destroy_made_meanwhile_is_not_made_again(db):
    config = fast_config(POOL, settings=NO_PASSES)

    async def scenario():
        async with running(config, db) as (manager, dummy):
            vm, completed = await _one_returned(db)
            manager.destroy_soon(completed)
            pool = manager.pools["a"]
            assert manager.launch(("vm", vm.name), destroy._destroy(manager, pool, completed))  # as a pass would
            launched = []
            original_launch = manager.launch
            manager.launch = lambda key, coroutine, work=None: launched.append(original_launch(key, coroutine, work))
            await asyncio.sleep(destroy.RETURN_INTERVAL * 5)
            return launched
    assert asyncio.run(scenario()) == [False]  # the return's own destroy: stale, not launched
    assert [e.to_state for e in events(db)].count("destroyed") == 1


def test_a_manager_that_may_not_act_leaves_the_vm_to_the_next_pass(db):
    config = fast_config(POOL, settings=NO_PASSES)

    async def scenario():
        async with running(config, db) as (manager, _dummy):
            vm, completed = await _one_returned(db)
            manager.paused_until = time.monotonic() + 60  # as after the database was found unavailable
            manager.destroy_soon(completed)
            await asyncio.sleep(destroy.RETURN_INTERVAL * 5)
            left = vm_store.latest(db, vm.name).state
            manager.paused_until = 0
            await manager.run_pass()
            await wait_for(lambda: vm_store.latest(db, vm.name).state == "destroyed", timeout=5, what="destroyed")
            return left
    assert asyncio.run(scenario()) == "completed"


def test_the_service_destroys_a_deleted_vm_without_a_pass(tmp_path):
    """Through HTTP: the DELETE's handler hands the VM to the process's own manager."""
    service = InProcessService(service_config(tmp_path, POOL, settings=NO_PASSES))
    try:
        wait_until(lambda: service.get("/status").json()["pools"]["a"]["ready"] == 3, 30, "pool full")
        name = service.post("/vm/a").json()["a"]["hostname"]
        assert service.delete(f"/vm/{name}").json() == {"ok": True}
        wait_until(lambda: vm_store.latest(service.db, name).state == "destroyed", 5, f"{name} destroyed")
    finally:
        service.stop()
