"""The manager filling on-demand requests on the dummy provider: filled, expired, cancelled,
failing clones, limits, and the pools' sizes kept apart."""
import asyncio

from tests.manager.helpers import events, fast_config, rows, running, wait_for
from vmpooler.db import ondemand as requests_db
from vmpooler.db.database import utcnow
from vmpooler.providers.base import PermanentError

POOLS = [{"name": "a", "template": "tmpl-a", "size": 1, "alias": ["both"]},
         {"name": "b", "template": "tmpl-b", "size": 0, "alias": ["both"]}]


def run(coroutine):
    return asyncio.run(coroutine)


def request(db, request_id, wants, owner=None):
    requests_db.create(db, request_id, wants, utcnow(), owner)


def state_of(db, request_id):
    return requests_db.find(db, request_id).row.state


def request_vms(db, request_id):
    return requests_db.find(db, request_id).vms


def test_a_request_is_filled_beside_the_pools_and_handed_over_at_once(db):
    config = fast_config(POOLS, dummy={"boot_max_time": 0.05})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            request(db, "r1", [("a", "a", 2), ("both", "b", 1)])
            await wait_for(lambda: state_of(db, "r1") == "ready", what="the request to be filled")
            await asyncio.sleep(0.2)  # more passes: nothing changes any more
            own = [r for r in rows(db, pool="a") if r.want_id is None and r.state == "ready"]
            assert len(own) == 1  # pool a keeps its size of 1 on its own VMs
            return dummy.names()
    names = run(scenario())
    vms = request_vms(db, "r1")
    assert len(vms) == 3 and {vm.state for vm in vms} == {"running"}
    assert {vm.pool for vm in vms} == {"a", "b"}
    assert len({vm.checkout_at for vm in vms}) == 1  # one transaction
    assert all(vm.expires_at for vm in vms) and {vm.name for vm in vms} <= names
    assert not any(r.state in ("completed", "destroyed") for r in rows(db))  # nothing taken as excess
    for vm in vms:
        assert [e.to_state for e in events(db, vm.name)] == ["pending", "pending", "ready", "running"]


def test_vms_booting_in_the_same_pass_never_fail_a_filled_request(db):
    """The original's race (two VMs of a request ready in one pass: the request failed seconds
    after it was filled, its VMs destroyed) on a ttl that passes while we watch."""
    config = fast_config([{**POOLS[0], "size": 0}], settings={"ondemand_request_ttl": 0.02})  # 1.2 s

    async def scenario():
        async with running(config, db):
            request(db, "twins", [("a", "a", 2)])
            await wait_for(lambda: state_of(db, "twins") == "ready", what="the request to be filled")
            await asyncio.sleep(1.5)  # past the ttl, over a hundred passes
    run(scenario())
    assert state_of(db, "twins") == "ready"
    vms = request_vms(db, "twins")
    assert len(vms) == 2 and {vm.state for vm in vms} == {"running"}


def test_a_request_not_filled_in_time_fails_and_its_vms_are_destroyed(db):
    config = fast_config([{**POOLS[0], "size": 0}], settings={"ondemand_request_ttl": 0.003},  # 180 ms
                         dummy={"boot_max_time": 3600})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            request(db, "slow", [("a", "a", 2)])
            await wait_for(lambda: state_of(db, "slow") == "failed", what="the request to fail")
            await wait_for(lambda: {vm.state for vm in request_vms(db, "slow")} == {"destroyed"})
            await asyncio.sleep(0.1)
            return dummy.names()
    assert run(scenario()) == set()
    failed = requests_db.find(db, "slow")
    assert "ondemand_request_ttl '0.003'" in failed.row.failure and len(failed.vms) == 2


def test_a_cancelled_request_is_destroyed_and_no_longer_cloned(db):
    config = fast_config([{**POOLS[0], "size": 0}], dummy={"boot_max_time": 3600})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            request(db, "gone", [("a", "a", 3)])
            await wait_for(lambda: len(request_vms(db, "gone")) == 3)
            assert requests_db.cancel(db, "gone", utcnow()) is True
            await wait_for(lambda: {vm.state for vm in request_vms(db, "gone")} == {"destroyed"})
            await asyncio.sleep(0.2)
            return dummy.names()
    assert run(scenario()) == set()
    assert len(request_vms(db, "gone")) == 3 and state_of(db, "gone") == "deleted"


def test_transient_clone_failures_are_retried_then_fail_the_request(db):
    config = fast_config([{**POOLS[0], "size": 0}], settings={"clone_attempts": 3},
                         dummy={"createvm_fail_percent": 100})

    async def scenario():
        async with running(config, db):
            request(db, "flaky", [("a", "a", 1)])
            await wait_for(lambda: state_of(db, "flaky") == "failed", what="the request to fail")
    run(scenario())
    failed = requests_db.find(db, "flaky")
    assert "simulated clone failure" in failed.row.failure
    assert failed.vms[0].clone_attempts == 3
    reasons = [e.reason for e in events(db, failed.vms[0].name)]
    assert sum("retrying" in r for r in reasons) == 2 and sum("giving up" in r for r in reasons) == 1


def test_a_transient_failure_that_clears_still_fills_the_request(db):
    config = fast_config([{**POOLS[0], "size": 0}], settings={"clone_attempts": 5},
                         dummy={"createvm_fail_percent": 100})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            request(db, "recovers", [("a", "a", 1)])
            await wait_for(lambda: any(vm.clone_attempts for vm in request_vms(db, "recovers")))
            dummy.knobs["createvm_fail_percent"] = 0
            await wait_for(lambda: state_of(db, "recovers") == "ready", what="the request to be filled")
    run(scenario())


def test_a_permanent_clone_error_fails_the_request_at_once(db):
    config = fast_config([{**POOLS[0], "size": 0}], settings={"clone_attempts": 5}, dummy={"createvm_max_time": 0.2})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            real_create = dummy.create_vm

            def create_vm(pool, name):
                if name == sorted(vm.name for vm in request_vms(db, "broken"))[0]:
                    raise PermanentError("template tmpl-a not found")
                return real_create(pool, name)
            dummy.create_vm = create_vm
            request(db, "broken", [("a", "a", 3)])
            await wait_for(lambda: state_of(db, "broken") == "failed", what="the request to fail")
            # destroyed, or gone (reconcile's word for the one the provider never made)
            await wait_for(lambda: {vm.state for vm in request_vms(db, "broken")} <= {"destroyed", "gone"})
            return dummy.names()
    assert run(scenario()) == set()
    failed = requests_db.find(db, "broken")
    assert failed.row.failure == "The request failed to provision instances: template tmpl-a not found"
    assert sorted(vm.clone_attempts for vm in failed.vms) == [0, 0, 1]  # no retry of the permanent one


def test_a_vm_lost_before_the_hand_over_is_replaced(db):
    config = fast_config([{**POOLS[0], "size": 0, "timeout": 0.002}], dummy={"boot_max_time": 3600})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            request(db, "retry", [("a", "a", 1)])
            await wait_for(lambda: any(vm.state in ("completed", "destroyed") for vm in request_vms(db, "retry")))
            dummy.knobs["boot_max_time"] = 0
            await wait_for(lambda: state_of(db, "retry") == "ready", what="the request to be filled")
    run(scenario())
    vms = request_vms(db, "retry")
    assert len(vms) >= 2 and sum(vm.state == "running" for vm in vms) == 1


def peak_clones(db, config, request_id, count, done, ondemand_only):
    """Most clones in flight (all, or the request's only) seen until ``done()``."""
    peak = 0

    async def scenario():
        nonlocal peak
        async with running(config, db):
            request(db, request_id, [("a", "a", count)])
            while not done():
                cloning = [vm for vm in (request_vms(db, request_id) if ondemand_only else rows(db))
                           if vm.state == "pending" and vm.cloned_at is None]
                peak = max(peak, len(cloning))
                await asyncio.sleep(0.005)
    run(scenario())
    return peak


def test_ondemand_clone_limit_bounds_ondemand_clones_in_flight(db):
    config = fast_config([{**POOLS[0], "size": 0}], settings={"ondemand_clone_limit": 2},
                         dummy={"createvm_max_time": 0.05})
    assert 1 <= peak_clones(db, config, "many", 7, lambda: state_of(db, "many") == "ready", True) <= 2


def test_task_limit_bounds_every_clone_in_flight(db):
    config = fast_config([{**POOLS[0], "size": 4}], settings={"task_limit": 3, "ondemand_clone_limit": 3},
                         dummy={"createvm_max_time": 0.05})

    def done():
        return state_of(db, "shared") == "ready" and len(rows(db, state="ready")) == 4
    assert 1 <= peak_clones(db, config, "shared", 4, done, False) <= 3


def test_the_ondemand_loop_and_the_pools_take_clone_slots_from_one_refiller(db):
    """One owner of refilling (manager/refill.py): the pass's replenish, the fills between passes
    and the on-demand loop all count and take slots inside ``Refiller.counted``, and no other
    module of the manager counts slots, holds a lock or checks whether a retry is due (but the
    retry policy, whose ``due`` the refiller asks)."""
    import inspect
    import os
    import vmpooler.manager as manager_package
    from vmpooler.manager.refill import Refiller

    config = fast_config(POOLS, dummy={"boot_max_time": 0.05})
    callers = set()
    original = Refiller.counted

    def counted(self, now):
        callers.add(inspect.stack()[1].function + "@" + os.path.basename(inspect.stack()[1].filename))
        return original(self, now)

    async def scenario():
        async with running(config, db) as (manager, _dummy):
            manager.refiller.counted = counted.__get__(manager.refiller)
            request(db, "r1", [("a", "a", 1)])
            await wait_for(lambda: state_of(db, "r1") == "ready", what="the request to be filled")
            manager.refill()
            await asyncio.sleep(0.1)
    run(scenario())
    assert {"run@ondemand.py", "run@replenish.py", "_fill_now@refill.py"} <= callers
    folder = os.path.dirname(manager_package.__file__)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py") and name not in ("refill.py", "retry.py"):  # retry.py: the policy's due check
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                source = handle.read()
            for owned in ("stock_counts", "settings.task_limit", "asyncio.Lock", "next_attempt_at <=", "clone_slots"):
                if name == "retry.py" and owned == "next_attempt_at <=":
                    continue  # RetryPolicy.due: the one definition of "due" that refill.py (and checks) ask
                assert owned not in source, f"manager/{name} does refill.py's job: {owned}"
