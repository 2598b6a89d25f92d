"""On-demand requests across kill -9: a real server killed at random moments while requests are
being created, filled and deleted, restarted, and checked: every acknowledged request is
completed after the restart, no VM is lost, leaked or given to two requests.

Replay a failure with the seed the test prints: VMPOOLER_CRASH_SEED=<seed> python -m pytest
tests/reliability/test_ondemand_crash.py -s
"""
import random
import threading

from sqlalchemy import select

from tests.api.conftest import USERS_AUTH
from tests.reliability.harness import (ClientLoop, ServerProcess, crash_scenario, crash_seed, load_then_kill,
                                      pools_full, wait_until)
from tests.reliability.invariants import (assert_each_vm_checked_out_at_most_once, assert_live_set_is,
                                          assert_no_name_live_twice)
from vmpooler.db.models import ondemand_requests, ondemand_wants, vms

POOLS = [{"name": "a", "template": "t", "size": 1, "alias": ["any"]},
         {"name": "b", "template": "t", "size": 0, "alias": ["any"]}]
#: slow enough that kills land in the middle of clones, boots and hand-overs
DUMMY = {"createvm_max_time": 0.03, "destroyvm_max_time": 0.03, "boot_max_time": 0.06}
SETTINGS = {"reconcile_interval": 0.1, "ondemand_request_ttl": 30}


class Requester(ClientLoop):
    """POSTs on-demand requests (and DELETEs some) until the server dies, recording what was
    acknowledged: {request_id: {name: count}} and the request_ids whose DELETE was answered."""

    def __init__(self, client, token, rng, tag, acknowledged, deleted):
        super().__init__()
        self.client, self.token, self.rng, self.tag = client, token, rng, tag
        self.acknowledged, self.deleted = acknowledged, deleted

    def step(self, step):
        live = [r for r in self.acknowledged if r not in self.deleted]
        if live and self.rng.random() < 0.2:
            request_id = self.rng.choice(live)
            response = self.client.delete(f"/api/v1/ondemandvm/{request_id}", token=self.token, timeout=5)
            if response.status == 200:
                self.deleted.add(request_id)
            else:
                self.unexpected.append((response.status, response.text[:200]))
            return
        wanted = {name: self.rng.randint(1, 2) for name in self.rng.sample(["a", "b", "any"], self.rng.randint(1, 2))}
        request_id = f"{self.tag}-{step}"
        response = self.client.post("/api/v1/ondemandvm", {**wanted, "request_id": request_id}, token=self.token,
                                    timeout=5)
        if response.status == 201:
            self.acknowledged[request_id] = wanted
        else:
            self.unexpected.append((response.status, response.text[:200]))
        threading.Event().wait(self.rng.uniform(0, 0.05))


def requests_in(db) -> dict:
    """{request_id: (state, {requested name: count}, [VM rows])}."""
    with db.read() as conn:
        found = {row.id: (row.request_id, row.state) for row in conn.execute(select(ondemand_requests))}
        wants = list(conn.execute(select(ondemand_wants)))
        rows = list(conn.execute(select(vms).where(vms.c.want_id.is_not(None))))
    result = {}
    for ref, (request_id, state) in found.items():
        mine = [w for w in wants if w.request_ref == ref]
        counts = {}
        for want in mine:
            counts[want.requested] = counts.get(want.requested, 0) + want.count
        result[request_id] = (state, counts, [r for r in rows if r.want_id in {w.id for w in mine}])
    return result


def check_acknowledged(server, acknowledged, deleted):
    db = server.database()
    try:
        stored = requests_in(db)
        for request_id, wanted in acknowledged.items():
            assert request_id in stored, f"acknowledged request {request_id} lost"
            assert stored[request_id][1] == wanted, f"{request_id}: stored {stored[request_id][1]}, asked {wanted}"
        for request_id in deleted:
            assert stored[request_id][0] == "deleted", f"acknowledged DELETE of {request_id} lost"
        assert_each_vm_checked_out_at_most_once(db)
        assert_no_name_live_twice(db)
        return stored
    finally:
        db.dispose()


def all_settled(server) -> bool:
    """Every request ready or deleted, the pools full, nothing left to destroy."""
    db = server.database()
    try:
        states = {state for state, _counts, _rows in requests_in(db).values()}
    finally:
        db.dispose()
    return states <= {"ready", "deleted"} and pools_full(server.client, POOLS)


def test_ondemand_requests_survive_kill_9_at_random_moments(tmp_path):
    seed, rounds = crash_seed("ondemand crash", 10)
    rng = random.Random(seed)
    server = ServerProcess(tmp_path, POOLS, settings=SETTINGS, dummy={**DUMMY, "seed": seed}, auth=USERS_AUTH)
    acknowledged, deleted, unexpected = {}, set(), []
    interrupted = 0
    token = None
    with crash_scenario(server, "ondemand crash", seed):
        for round_number in range(rounds):
            server.start()
            if token is None:
                token = server.client.post("/api/v1/token", user="jdoe").json()["token"]
            requester = Requester(server.client, token, random.Random(rng.random()), f"r{round_number}",
                                  acknowledged, deleted)
            unexpected += load_then_kill(server, [requester], rng.uniform(0.05, 0.5))
            stored = check_acknowledged(server, acknowledged, deleted)
            # killed in the middle of a request: some of it cloned or booting, not yet handed over
            interrupted += any(state == "pending" and rows for state, _counts, rows in stored.values())
        server.start()
        wait_until(lambda: all_settled(server), 60, "every request to be filled after the last restart")
        stored = check_acknowledged(server, acknowledged, deleted)
        handed = {}
        for request_id, (state, counts, rows) in stored.items():
            running = [r for r in rows if r.state == "running"]
            if state == "ready":
                assert len(running) == sum(counts.values()), f"{request_id}: {len(running)} VMs for {counts}"
                assert all(r.token_user == "jdoe" for r in running)
                body = server.client.get(f"/api/v1/ondemandvm/{request_id}").json()
                assert sorted(h for name in counts for h in body[name]["hostname"]) == sorted(r.name for r in running)
            else:
                assert not [r for r in rows if r.state in ("pending", "ready", "running")], f"{request_id} leaks VMs"
            for row in running:
                assert row.id not in handed, f"{row.name} given to {handed[row.id]} and {request_id}"
                handed[row.id] = request_id
        db = server.database()
        try:
            assert_live_set_is(db, server.inventory())  # no VM leaked in the provider, none lost
        finally:
            db.dispose()
        assert server.stop() == 0
    print(f"{len(acknowledged)} requests, {len(deleted)} deletes acknowledged; {len(handed)} VMs handed over; "
          f"{interrupted} of {rounds} kills in the middle of a request")
    assert unexpected == [], f"unexpected answers (seed {seed}): {unexpected[:5]}"
    assert len(acknowledged) >= rounds and handed and interrupted, "too little load to prove anything"
    assert "Traceback" not in server.log()
