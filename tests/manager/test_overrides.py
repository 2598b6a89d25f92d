"""The manager applies run-time pool configuration: a pool grows and shrinks (to 0), a new
template or clone target drains the pool and re-clones it the new way, a reset drains and
refills it; a drain asked for before a crash is carried out at the next start."""
import asyncio

from tests.conftest import add_vm
from tests.manager.helpers import events, fast_config, rows, running, states, wait_for
from vmpooler.db import overrides
from vmpooler.db.database import utcnow
from vmpooler.manager import overrides as manager_overrides
from vmpooler.manager.scheduler import Manager, Pass
from vmpooler.providers.dummy.provider import DummyProvider
from vmpooler.providers.registry import REGISTRY

POOL = {"name": "a", "template": "t/old", "size": 2}
WHO = overrides.Actor("jdoe", "127.0.0.1")


def configured(config):
    return config.pools_by_name


def ready_templates(db, pool="a"):
    return sorted(row.template for row in rows(db, pool=pool, state="ready"))


def test_a_pool_grows_and_shrinks_to_zero(db):
    config = fast_config([POOL, {"name": "b", "template": "t/b", "size": 1}])

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db, "a").get("ready") == 2 and states(db, "b").get("ready") == 1)
            overrides.change_setting(db, configured(config), "size", {"a": 4}, WHO, utcnow())
            await wait_for(lambda: states(db, "a").get("ready") == 4, what="pool a to grow to 4")
            assert manager.pools["a"].size == 4
            overrides.change_setting(db, configured(config), "size", {"a": 0}, WHO, utcnow())
            await wait_for(lambda: states(db, "a").get("destroyed") == 4 and "ready" not in states(db, "a"),
                           what="pool a to empty")
            await asyncio.sleep(0.1)
            assert set(states(db, "a")) == {"destroyed"} and states(db, "b") == {"ready": 1}
            assert {row.name for row in rows(db, pool="b")} == dummy.names()
    asyncio.run(scenario())


def test_a_new_template_drains_the_pool_and_reclones_it(db):
    config = fast_config([{**POOL, "size": 3}])

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 3)
            old = {row.name for row in rows(db, state="ready")}
            overrides.change_setting(db, configured(config), "template", {"a": "t/new"}, WHO, utcnow())
            await wait_for(lambda: ready_templates(db) == ["t/new"] * 3 and states(db).get("destroyed") == 3,
                           what="the pool to be re-cloned from t/new")
            assert overrides.pending_drains(db) == {}
            assert not old & dummy.names()
            assert {dummy.get_vm(None, name).template for name in dummy.names()} == {"t/new"}
            return old
    old = asyncio.run(scenario())
    for name in old:
        assert any("drained: template changed from t/old to t/new" in e.reason for e in events(db, name))
    drain = [e for e in overrides.events(db) if e.action == "drain"]
    assert len(drain) == 1 and drain[0].after == "3 VMs completed" and drain[0].user == "manager"


class RecordingDummy(DummyProvider):
    """The dummy provider, noting the clone target of the pool each clone was asked for (the
    dummy has no clusters; vSphere's reading of it is tested in tests/vsphere/test_overrides.py)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.clone_targets = []

    def create_vm(self, pool, name):
        self.clone_targets.append(pool.raw.get("clone_target"))
        return super().create_vm(pool, name)


def test_a_new_clone_target_reaches_the_provider_and_drains(db):
    config = fast_config([{**POOL, "clone_target": "cluster1"}])
    providers = {"dummy": RecordingDummy("dummy", config.providers["dummy"].options)}

    async def scenario():
        async with running(config, db, providers) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 2)
            overrides.change_setting(db, configured(config), "clone_target", {"a": "cluster2"}, WHO, utcnow())
            await wait_for(lambda: states(db).get("destroyed") == 2 and states(db).get("ready") == 2)
            return dummy.clone_targets
    targets = asyncio.run(scenario())
    assert targets == ["cluster1", "cluster1", "cluster2", "cluster2"]


def test_a_change_committed_while_a_pass_reads_is_never_drained_into_the_old_configuration(db, monkeypatch):
    """The change lands between the pass's read of the pools and the rest of its reads (on
    PostgreSQL the pass yields there): the drain it asks for must refill from the new pools, in
    this pass or the next, never from the pools read before it."""
    config = fast_config([{**POOL, "clone_target": "cluster1"}])
    providers = {"dummy": RecordingDummy("dummy", config.providers["dummy"].options)}
    read_pools, armed = overrides.effective_pools, []

    def effective_pools(*args):
        pools = read_pools(*args)
        if armed and armed.pop():  # once: right after this read, as another process would
            overrides.change_setting(db, configured(config), "clone_target", {"a": "cluster2"}, WHO, utcnow())
        return pools

    monkeypatch.setattr(overrides, "effective_pools", effective_pools)

    async def scenario():
        async with running(config, db, providers) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 2)
            armed.append(True)
            await wait_for(lambda: states(db).get("destroyed") == 2 and states(db).get("ready") == 2)
            return dummy.clone_targets
    assert asyncio.run(scenario()) == ["cluster1", "cluster1", "cluster2", "cluster2"]


def test_a_reset_drains_and_refills(db):
    config = fast_config([POOL])

    async def scenario():
        async with running(config, db):
            await wait_for(lambda: states(db).get("ready") == 2)
            first = {row.name for row in rows(db, state="ready")}
            overrides.request_reset(db, ["a"], WHO, utcnow())
            await wait_for(lambda: states(db).get("destroyed") == 2 and states(db).get("ready") == 2)
            assert not first & {row.name for row in rows(db, state="ready")}
    asyncio.run(scenario())


def test_a_drain_asked_for_before_a_crash_is_carried_out_at_the_next_start(db, tmp_path):
    config = fast_config([POOL], dummy={"filename": str(tmp_path / "dummy.json")})

    async def first_run():
        async with running(config, db):
            await wait_for(lambda: states(db).get("ready") == 2)

    async def second_run():
        async with running(config, db, REGISTRY.build(config)) as (manager, dummy):
            await wait_for(lambda: ready_templates(db) == ["t/new", "t/new"] and states(db).get("destroyed") == 2)
            assert manager.pools["a"].template == "t/new"
            assert {dummy.get_vm(None, name).template for name in dummy.names()} == {"t/new"}

    asyncio.run(first_run())
    # committed while no manager ran (it crashed before its next pass)
    overrides.change_setting(db, configured(config), "template", {"a": "t/new"}, WHO, utcnow())
    asyncio.run(second_run())


def test_a_drain_takes_its_pool_s_pending_vms_out_of_the_pass(db):
    """The pass reads the pending VMs before the overrides loop drains: what it drained must not
    reach the later loops (boot probes, clone retries) as if still pending."""
    config = fast_config([POOL, {"name": "b", "template": "t/b", "size": 1}])
    add_vm(db, config.pools_by_name["a"], "pending")
    add_vm(db, config.pools_by_name["b"], "pending")
    overrides.request_reset(db, ["a"], WHO, utcnow())

    async def scenario():
        manager = Manager(config, db, REGISTRY.build(config))
        work = await Pass.read(db)
        assert sorted(vm.pool for vm in work.pending) == ["a", "b"]
        await manager_overrides.run(manager, work)
        assert [vm.pool for vm in work.pending] == ["b"]
        assert states(db, "a") == {"completed": 1}
    asyncio.run(scenario())
