"""Crash and restart: a real server killed with SIGKILL at random moments of HTTP load and pool
refill, restarted, and checked against what it acknowledged.

Replay a failure with the seed the test prints: VMPOOLER_CRASH_SEED=<seed> (and optionally
VMPOOLER_CRASH_ROUNDS=<n>) python -m pytest tests/reliability/test_crash_restart.py -s
"""
import random

from tests.api.conftest import USERS_AUTH
from tests.reliability.harness import (ServerProcess, Worker, crash_scenario, crash_seed, load_then_kill, pools_full,
                                      wait_until)
from tests.reliability.invariants import (Ledger, assert_each_vm_checked_out_at_most_once, assert_live_set_is,
                                          assert_no_name_live_twice)

POOLS = [{"name": "a", "template": "t", "size": 3}, {"name": "b", "template": "t", "size": 2}]
#: enough ready VMs for many clients at once
WIDE_POOLS = [{"name": "a", "template": "t", "size": 8}, {"name": "b", "template": "t", "size": 6}]
#: slow enough that kills land in the middle of clones and destroys
DUMMY = {"createvm_max_time": 0.03, "destroyvm_max_time": 0.03, "boot_max_time": 0.02}


def check_database(server, ledgers, inventory_too):
    db = server.database()
    try:
        for ledger in ledgers:
            ledger.verify(db)
        assert_each_vm_checked_out_at_most_once(db)
        assert_no_name_live_twice(db)
        if inventory_too:
            assert_live_set_is(db, server.inventory())
    finally:
        db.dispose()


def crash_rounds(tmp_path, pools, clients: int, rounds: int, pause: tuple) -> list:
    """``rounds`` times: start the server, let ``clients`` workers load it (each with a ledger of
    its own: it acts only on what it was given) for a random time within ``pause``, kill -9 it,
    and check every acknowledged answer against the database; then a last clean start and stop.
    Returns the ledgers."""
    seed, rounds = crash_seed(f"crash-restart ({clients} clients)", rounds)
    rng = random.Random(seed)
    server = ServerProcess(tmp_path, pools, settings={"reconcile_interval": 0.1}, dummy={**DUMMY, "seed": seed},
                           auth=USERS_AUTH)
    ledgers = [Ledger() for _ in range(clients)]
    unexpected = []
    with crash_scenario(server, "crash-restart", seed):
        for round_number in range(rounds):
            server.start()
            # After a restart and its reconcile pass every pool converges back to its size, and
            # the database's live VMs are exactly the provider's inventory.
            wait_until(lambda: pools_full(server.client, pools), 20, f"pools to refill (round {round_number})")
            check_database(server, ledgers, inventory_too=True)
            for ledger in ledgers:
                if not ledger.tokens:
                    response = server.client.post("/api/v1/token", user="jdoe")
                    ledger.tokens[response.json()["token"]] = "jdoe"
            workers = [Worker(server.client, ledger, random.Random(rng.random()), f"r{round_number}c{n}")
                       for n, ledger in enumerate(ledgers)]
            unexpected += load_then_kill(server, workers, rng.uniform(*pause))
            check_database(server, ledgers, inventory_too=False)
        server.start()
        wait_until(lambda: pools_full(server.client, pools), 20, "pools to refill after the last restart")
        check_database(server, ledgers, inventory_too=True)
        assert server.stop() == 0
        check_database(server, ledgers, inventory_too=True)
    checkouts = sum(len(ledger.checkouts) for ledger in ledgers)
    print(f"{checkouts} checkouts, {sum(len(ledger.deleted) for ledger in ledgers)} deletes, "
          f"{sum(len(ledger.tags) for ledger in ledgers)} VMs tagged acknowledged")
    assert unexpected == [], f"unexpected answers (seed {seed}): {unexpected[:5]}"
    assert checkouts >= rounds, f"too little load to prove anything: {checkouts} checkouts"
    assert "Traceback" not in server.log()
    return ledgers


def test_kill_9_at_random_moments_loses_nothing(tmp_path):
    crash_rounds(tmp_path, POOLS, clients=1, rounds=20, pause=(0.05, 0.6))


def test_kill_9_under_many_concurrent_clients_loses_nothing_acknowledged(tmp_path):
    """Many clients at once, so that their checkouts, PUTs, deletes and token writes share the
    group commit's batches (db/batch.py): after each kill every answer any client was given is in
    the database, and no VM went to two clients."""
    crash_rounds(tmp_path, WIDE_POOLS, clients=8, rounds=6, pause=(0.2, 0.8))
