"""Races over HTTP: many clients check out, extend, tag and delete the same VMs while the manager
expires them (a lifetime of about a second), destroys them and refills the pools. No VM is handed
out twice, no request gets a 5xx (other than the designed 503 of an empty pool), and the
database ends equal to the provider's inventory.

The state layer alone is model-checked by tests/db/test_state_model.py (hypothesis).
"""
import itertools
import random
import threading
import time

from benchmarks.threads import run_threads
from tests.reliability.harness import pools_full, service_config, wait_until
from tests.service import InProcessService
from tests.reliability.invariants import (assert_database_matches_inventory, assert_each_vm_checked_out_at_most_once,
                                          assert_every_checkout_recorded_once, assert_no_name_live_twice)
from vmpooler.manager import hostnames

POOLS = [{"name": "a", "template": "t", "size": 4}, {"name": "b", "template": "t", "size": 3}]
CLIENTS, SECONDS, MAX_REQUESTS = 12, 4.0, 600
#: what each kind of request may answer while others race it
ALLOWED = {"checkout": {200, 503}, "get": {200}, "put": {200, 404, 409}, "delete": {200, 404}}


def test_clients_racing_each_other_and_the_manager(tmp_path):
    seed = random.randrange(2 ** 32)
    print(f"races seed {seed}")
    config = service_config(tmp_path, POOLS, settings={"vm_lifetime": 0.0003, "check_loop_delay_min": 0.02},
                            dummy={"createvm_max_time": 0.01, "destroyvm_max_time": 0.01})
    service = InProcessService(config)
    lock = threading.Lock()
    handed_out, seen, wrong = [], [], []
    deadline = time.monotonic() + SECONDS

    def client_loop(number):
        rng = random.Random(seed + number)
        for _ in range(MAX_REQUESTS):
            if time.monotonic() > deadline:
                return
            with lock:
                target = rng.choice(seen[-20:]) if seen else None
            choice = rng.random()
            if choice < 0.4 or target is None:
                kind, path = "checkout", rng.choice(["a", "b", "a+b", "a+a"])
                response = service.client.post(f"/api/v1/vm/{path}")
            elif choice < 0.55:
                kind, response = "get", service.client.get(f"/api/v1/vm/{target}")
            elif choice < 0.75:
                body = rng.choice([{"lifetime": 1}, {"tags": {"client": str(number)}}])
                kind, response = "put", service.client.put(f"/api/v1/vm/{target}", body)
            else:
                kind, response = "delete", service.client.delete(f"/api/v1/vm/{target}")
            if response.status not in ALLOWED[kind] or response.headers["content-type"] != "application/json":
                wrong.append((kind, response.status, response.text[:200]))
            elif kind == "checkout" and response.status == 503:
                if "not enough ready VMs" not in response.json()["error"]:
                    wrong.append((kind, 503, response.text[:200]))
            elif kind == "checkout":
                names = []
                for pool, entry in response.json().items():
                    if pool != "ok":
                        hosts = entry["hostname"]
                        names += hosts if isinstance(hosts, list) else [hosts]
                with lock:
                    handed_out.extend(names)
                    seen.extend(names)

    try:
        wait_until(lambda: pools_full(service.client, POOLS), 10, "the pools to fill")
        started = time.monotonic()
        run_threads(client_loop, CLIENTS, SECONDS + 30)
        print(f"{len(handed_out)} checkouts in {time.monotonic() - started:.1f}s")
        # Lifetimes end, the manager destroys and refills; then one reconcile pass.
        wait_until(lambda: pools_full(service.client, POOLS), 20, "the pools to refill")
        service.reconcile_now()
        time.sleep(0.3)
        wait_until(lambda: pools_full(service.client, POOLS), 10, "the pools to be quiet")
        assert_database_matches_inventory(service.db, service.dummy, config.pools)
        assert_every_checkout_recorded_once(service.db, handed_out)
        assert_each_vm_checked_out_at_most_once(service.db)
        assert_no_name_live_twice(service.db)
    finally:
        service.stop()
    assert wrong == [], f"seed {seed}: {wrong[:5]}"
    assert len(handed_out) > 50, f"too few checkouts to race: {len(handed_out)}"


def test_a_late_delete_after_expiry_cannot_hit_the_next_vm_of_that_name(tmp_path, monkeypatch):
    """The name generator offers the expired VM's name again first, every time: the manager must
    refuse it (reserved for data_ttl after the VM is gone) and take a fresh one, so job 1's late
    DELETE finds its own destroyed VM (404) and never another job's."""
    fresh = itertools.count()
    offers = itertools.cycle([True, False])
    monkeypatch.setattr(hostnames, "generate",
                        lambda prefix="": "reused-x" if next(offers) else f"fresh-{next(fresh)}")
    pools = [{"name": "a", "template": "t", "size": 1}]
    service = InProcessService(service_config(tmp_path, pools, settings={"vm_lifetime": 0.0003}))
    client = service.client
    try:
        wait_until(lambda: pools_full(client, pools), 10, "the pool to fill")
        first = client.post("/api/v1/vm/a").json()["a"]["hostname"]  # job 1; its lifetime is ~1s
        assert first == "reused-x"
        wait_until(lambda: client.get(f"/api/v1/vm/{first}").json()[first]["state"] == "destroyed", 10,
                   "job 1's VM to expire and be destroyed")
        seconds = []
        for _ in range(3):  # jobs 2, 3, 4: each refill was offered "reused-x" first
            wait_until(lambda: pools_full(client, pools), 10, "the pool to refill")
            seconds.append(client.post("/api/v1/vm/a").json()["a"]["hostname"])
        assert first not in seconds and all(name.startswith("fresh-") for name in seconds)
        assert client.delete(f"/api/v1/vm/{first}").status == 404  # job 1 cleaning up, late
        second = seconds[-1]
        assert client.get(f"/api/v1/vm/{second}").json()[second]["state"] == "running"
    finally:
        service.stop()
