"""Provider faults: 30% failure rates and slow calls. Pools converge, failures are retried and
capped with their reason recorded, and the database ends equal to the provider's inventory."""
import asyncio
import random

from sqlalchemy import select

from tests.manager.helpers import fast_config, rows, running, states, wait_for
from tests.reliability.invariants import (assert_database_matches_inventory, assert_every_checkout_recorded_once,
                                          assert_no_name_live_twice)
from vmpooler.db import checkout as api
from vmpooler.db.checkout import Shortfall, Want
from vmpooler.db.database import utcnow
from vmpooler.db.models import tasks

FAULTS = {"createvm_fail_percent": 30, "destroyvm_fail_percent": 30, "createsnapshot_fail_percent": 30,
          "createvm_max_time": 0.02, "destroyvm_max_time": 0.02, "createsnapshot_max_time": 0.02, "seed": 7}
POOLS = [{"name": "a", "template": "t", "size": 6}, {"name": "b", "template": "t", "size": 4}]


def test_pools_converge_under_thirty_percent_faults(db):
    config = fast_config(POOLS, settings={"clone_attempts": 3, "destroy_attempts": 10, "task_attempts": 10,
                                          "circuit_breaker_failure_threshold": 50},
                         dummy=FAULTS)
    rng = random.Random(11)
    handed_out = []

    async def scenario():
        async with running(config, db) as (manager, dummy):
            for _ in range(60):  # checkout / snapshot / return load while faults happen
                pool = rng.choice("ab")
                try:
                    name = api.checkout(db, [Want(pool, (pool,), 1)], utcnow(), 24)[pool][0]
                except Shortfall:
                    await asyncio.sleep(0.02)
                    continue
                handed_out.append(name)
                vm = rows(db, name=name)[0]
                api.queue_task(db, vm, "snapshot", f"s{len(handed_out)}", utcnow())
                await asyncio.sleep(0.01)
                if rng.random() < 0.7:
                    assert api.delete(db, rows(db, name=name)[0], utcnow())
                manager.wake()
            for knob in ("createvm_fail_percent", "destroyvm_fail_percent", "createsnapshot_fail_percent"):
                dummy.knobs[knob] = 0
            await wait_for(lambda: states(db, "a").get("ready") == 6 and states(db, "b").get("ready") == 4
                           and not states(db).get("completed") and not states(db).get("pending"), timeout=20)
            await wait_for(lambda: _open_tasks(db) == 0, timeout=20)
            manager.next_reconcile = 0
            manager.tick()
            await asyncio.sleep(0.2)
            assert_database_matches_inventory(db, dummy, config.pools)
    asyncio.run(scenario())
    assert_no_name_live_twice(db)
    assert_every_checkout_recorded_once(db, handed_out)
    retried = [r for r in rows(db) if r.last_error and "simulated" in r.last_error]
    assert retried, "30% faults must have caused recorded retries"
    assert all(r.clone_attempts <= 3 for r in rows(db))


def _open_tasks(db):
    with db.read() as conn:
        return len(list(conn.execute(select(tasks.c.id).where(tasks.c.state.in_(("queued", "running"))))))
