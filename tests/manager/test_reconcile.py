"""Restart safety: the database and the provider's inventory are made to agree."""
import asyncio

from sqlalchemy import update

from tests.conftest import add_vm
from tests.manager.helpers import events, fast_config, rows, running, states, wait_for
from vmpooler.db import checkout as checkout_store
from vmpooler.db.database import utcnow
from vmpooler.db.models import vms
from vmpooler.providers.registry import REGISTRY

POOL = {"name": "a", "template": "tmpl-a", "size": 2}


def test_unknown_vm_in_the_provider_is_destroyed(db, tmp_path):
    config = fast_config([POOL], dummy={"filename": str(tmp_path / "inventory.json")})
    providers = REGISTRY.build(config)
    providers["dummy"].inject(config.pools[0], "orphan-vm")

    async def scenario():
        async with running(config, db, providers) as (manager, dummy):
            await wait_for(lambda: "orphan-vm" not in dummy.names())
            await wait_for(lambda: states(db).get("ready") == 2)
    asyncio.run(scenario())
    orphan = rows(db, name="orphan-vm")[0]
    assert orphan.state == "destroyed"
    assert "unknown to the database" in events(db, "orphan-vm")[0].reason


def test_vm_missing_from_the_provider_is_marked_gone(db):
    config = fast_config([POOL])
    pool = config.pools[0]
    ready = add_vm(db, pool, "ready")
    checked_out = add_vm(db, pool, "running")

    async def scenario():  # a fresh in-memory dummy knows neither VM
        async with running(config, db):
            await wait_for(lambda: states(db).get("ready") == 2)
    asyncio.run(scenario())
    assert rows(db, name=ready)[0].state == "gone"
    assert rows(db, name=checked_out)[0].state == "gone"
    assert rows(db, name=ready)[0].live_name is None


def test_vm_deleted_behind_our_back_while_running_is_marked_gone(db):
    """A checked-out VM removed from the provider is found by the reconcile, not by a ready check
    (a ready VM removed between the check's two probes is recycled instead: also fine, but racy)."""
    config = fast_config([POOL])

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 2)
            victim = checkout_store.checkout(db, [checkout_store.Want("a", ("a",), 1)], utcnow(), 24)["a"][0].name
            dummy.remove(victim)
            await wait_for(lambda: rows(db, name=victim)[0].state == "gone")
    asyncio.run(scenario())


def test_half_done_clone_is_resolved_on_restart(db, tmp_path):
    config = fast_config([{**POOL, "size": 2}], dummy={"filename": str(tmp_path / "inventory.json")})
    pool = config.pools[0]
    providers = REGISTRY.build(config)
    # a clone the provider finished but the database never heard of (killed in between) ...
    finished = add_vm(db, pool, "pending")
    providers["dummy"].inject(pool, finished)
    # ... and one killed before the provider made anything
    unborn = add_vm(db, pool, "pending")

    async def scenario():
        async with running(config, db, providers) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 2)
            assert {finished, unborn} <= dummy.names()
    asyncio.run(scenario())
    assert rows(db, name=finished)[0].state == "ready"
    assert rows(db, name=unborn)[0].state == "ready"


def test_vms_survive_a_restart_with_a_file_backed_dummy(db, tmp_path):
    config = fast_config([POOL], dummy={"filename": str(tmp_path / "inventory.json")})

    async def once():
        async with running(config, db):  # a new provider object each time, reading the file
            await wait_for(lambda: states(db).get("ready") == 2)
    asyncio.run(once())
    before = {r.name for r in rows(db, state="ready")}
    asyncio.run(once())
    assert {r.name for r in rows(db, state="ready")} == before
    assert "gone" not in states(db)


def test_failed_inventory_changes_nothing(db):
    config = fast_config([POOL], dummy={"listvms_fail_percent": 100})
    pool = config.pools[0]
    kept = add_vm(db, pool, "running")

    async def scenario():
        async with running(config, db):
            await asyncio.sleep(0.3)
    asyncio.run(scenario())
    assert rows(db, name=kept)[0].state == "running"


def test_written_off_vm_that_reappears_is_destroyed(db):
    config = fast_config([{**POOL, "size": 0}])
    pool = config.pools[0]
    name = add_vm(db, pool, "ready")
    with db.write() as conn:
        conn.execute(update(vms).where(vms.c.name == name).values(state="gone", live_name=None))
    providers = REGISTRY.build(config)
    providers["dummy"].inject(pool, name)

    async def scenario():
        async with running(config, db, providers) as (manager, dummy):
            await wait_for(lambda: name not in dummy.names())
    asyncio.run(scenario())
    assert rows(db, name=name)[0].state == "destroyed"


def test_clone_interrupted_before_its_power_on_is_replaced(db):
    config = fast_config([{**POOL, "size": 1}])
    pool = config.pools[0]
    providers = REGISTRY.build(config)
    half = add_vm(db, pool, "pending")  # the row written before the clone
    providers["dummy"].inject(pool, half)
    providers["dummy"].power_off(half)  # killed before the power-on

    async def scenario():
        async with running(config, db, providers) as (manager, dummy):
            await wait_for(lambda: half not in dummy.names() and states(db).get("ready") == 1)
    asyncio.run(scenario())
    assert rows(db, name=half)[0].state == "destroyed"
    assert any("before its power-on" in e.reason for e in events(db, half))
