"""Provider faults: 30% failure rates and slow calls. Pools converge, failures are retried and
capped with their reason recorded, and the database ends equal to the provider's inventory."""
import asyncio
import random
import threading
import time

from sqlalchemy import select

from tests.manager.helpers import fast_config, rows, running, states, wait_for
from tests.reliability.harness import breaker_state, pools_full, service_config, wait_until
from tests.service import InProcessService
from tests.reliability.invariants import (assert_database_matches_inventory, assert_each_vm_checked_out_at_most_once,
                                          assert_every_checkout_recorded_once, assert_no_name_live_twice)
from vmpooler.db import tasks as task_store
from vmpooler.db import checkout as checkout_store
from vmpooler.db import client_changes
from vmpooler.db import vms as vm_store
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
                    name = checkout_store.checkout(db, [Want(pool, (pool,), 1)], utcnow(), 24)[pool][0].name
                except Shortfall:
                    await asyncio.sleep(0.02)
                    continue
                handed_out.append(name)
                vm = rows(db, name=name)[0]
                task_store.queue(db, vm, "snapshot", f"s{len(handed_out)}", utcnow())
                await asyncio.sleep(0.01)
                if rng.random() < 0.7:
                    assert client_changes.delete(db, rows(db, name=name)[0], utcnow())
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


def test_api_keeps_answering_and_status_shows_the_breaker_open_then_closed(tmp_path):
    """Over HTTP, with the whole service in this process: the provider fails every clone and
    listing; the circuit breaker opens (GET /status says so), the API keeps answering quickly and
    cleanly meanwhile; when the provider heals the breaker closes and the pool refills."""
    pools = [{"name": "a", "template": "t", "size": 3}]
    config = service_config(tmp_path, pools, settings={
        "circuit_breaker_failure_threshold": 3, "circuit_breaker_timeout": 0.3,
        "circuit_breaker_half_open_attempts": 2, "reconcile_interval": 0.05})
    service = InProcessService(config)
    client = service.client
    answers, stop = [], threading.Event()

    def poll():  # a client that keeps asking while the faults happen
        while not stop.is_set():
            for path in ("/api/v1/status", "/api/v1/vm", "/api/v1/summary"):
                started = time.monotonic()
                response = client.get(path, timeout=10)
                answers.append((path, response.status, time.monotonic() - started))
            time.sleep(0.01)

    try:
        wait_until(lambda: pools_full(client, pools), 10, "the pool to fill")
        assert breaker_state(client) == "closed"
        service.dummy.knobs.update(createvm_fail_percent=100, listvms_fail_percent=100)
        poller = threading.Thread(target=poll)
        poller.start()
        handed_out = list(client.post("/api/v1/vm/a+a").json()["a"]["hostname"])
        handed_out.append(client.post("/api/v1/vm/a").json()["a"]["hostname"])
        wait_until(lambda: breaker_state(client) == "open", 10, "the breaker to open")
        status = client.get("/api/v1/status").json()
        assert status["providers"]["dummy"]["circuit_breaker"]["failures"] >= 3
        assert status["status"]["ok"] is False and status["status"]["empty"] == ["a"]
        empty = client.post("/api/v1/vm/a")
        assert empty.status == 503 and empty.json()["ok"] is False and "not enough ready VMs" in empty.json()["error"]
        name = handed_out[0]
        assert client.get(f"/api/v1/vm/{name}").json()[name]["state"] == "running"
        assert client.put(f"/api/v1/vm/{name}", {"tags": {"during": "outage"}}).status == 200
        assert client.delete(f"/api/v1/vm/{handed_out[2]}").status == 200
        service.dummy.knobs.update(createvm_fail_percent=0, listvms_fail_percent=0)
        wait_until(lambda: breaker_state(client) == "closed", 10, "the breaker to close")
        wait_until(lambda: pools_full(client, pools), 10, "the pool to refill")
        stop.set()
        poller.join(10)
        service.reconcile_now()
        time.sleep(0.3)
        wait_until(lambda: pools_full(client, pools), 10, "the pool to be quiet")
        assert_database_matches_inventory(service.db, service.dummy, config.pools)
        assert_every_checkout_recorded_once(service.db, handed_out)
        assert_each_vm_checked_out_at_most_once(service.db)
    finally:
        stop.set()
        service.stop()
    assert answers and all(status == 200 for _path, status, _seconds in answers), \
        [a for a in answers if a[1] != 200][:5]
    assert max(seconds for _path, _status, seconds in answers) < 1.0
