"""Several `vmpooler serve` processes on one PostgreSQL database, as a scaled-out deployment runs:
real processes, one shared dummy inventory file (the backend they all see), kill -9 of the leader.

The manager's timer is set to 30 s, so every refill seen here comes from a wake-up: a checkout on
any process must reach the leader's manager through PostgreSQL (NOTIFY), and a new leader must
refill at the start of its term.
"""
import os
import re
import threading
import time

import pytest
from sqlalchemy import func, select

from tests.api.conftest import scrape, values
from tests.reliability.harness import ServerProcess, wait_until
from vmpooler.db.models import vms

URL = os.environ.get("VMPOOLER_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="needs $VMPOOLER_TEST_POSTGRES_URL (scripts/test.sh sets it)")

POOLS = [{"name": "a", "template": "tmpl-a", "size": 6}, {"name": "b", "template": "tmpl-b", "size": 4}]
SIZES = {pool["name"]: pool["size"] for pool in POOLS}
SETTINGS = {"check_loop_delay_min": 30, "leader_lease_seconds": 3, "task_limit": 10}  # 3 s: 2 busy cores


@pytest.fixture
def cluster(tmp_path, database):
    """cluster(n, role="all", **sections): n processes on the database, sharing one inventory file,
    all started at the same moment; stopped after the test."""
    members = []

    def make(count, role="all", **sections):
        made = []
        for index in range(len(members), len(members) + count):
            workdir = tmp_path / f"process{index}"
            workdir.mkdir()
            made.append(ServerProcess(workdir, POOLS, settings=SETTINGS, database_url=URL, role=role,
                                      inventory_path=tmp_path / "inventory.json",
                                      dummy={"createvm_max_time": 0.02}, **sections))
        threads = [threading.Thread(target=member.start) for member in made]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        members.extend(made)
        return made

    yield make
    for member in members:
        if member.process is not None and member.process.poll() is None:
            member.stop()


def status(member) -> dict:
    return member.client.get("/api/v1/status", timeout=5).json()


def manager_of(member) -> dict:
    return status(member)["status"]["manager"]


def leader_pid(member) -> int:
    holder = manager_of(member)["current_leader"]
    return int(holder.split(":")[1]) if holder else None


def live_counts(db) -> dict:
    """{pool: pending + ready} read straight from the database."""
    with db.read() as conn:
        rows = conn.execute(select(vms.c.pool, func.count()).where(vms.c.state.in_(("pending", "ready")))
                            .group_by(vms.c.pool))
        return dict(rows.all())


def full(member) -> bool:
    pools = status(member)["pools"]
    return all(pools[name]["ready"] == size for name, size in SIZES.items())


def check_out(member, pool="a") -> str:
    answer = member.client.post(f"/api/v1/vm/{pool}")
    assert answer.status == 200, answer.text
    return answer.json()[pool]["hostname"]


def test_three_processes_one_manager_no_vm_twice_and_no_stale_read(cluster, database):
    members = cluster(3)
    samples = []
    deadline = time.monotonic() + 60
    while not full(members[0]):  # pools fill once, by one manager, never past their size
        samples.append(live_counts(database))
        assert time.monotonic() < deadline, "the pools did not fill within 60 s"
        time.sleep(0.02)
    assert all(count <= SIZES[pool] for sample in samples for pool, count in sample.items()), samples
    leaders = {leader_pid(member) for member in members}
    assert len(leaders) == 1 and leaders <= {member.process.pid for member in members}
    assert sum(manager_of(member)["leader"] for member in members) == 1
    health = [member.client.get("/healthcheck?details").json() for member in members]
    assert sum(answer["manager"]["leader"] for answer in health) == 1
    assert {answer["manager"]["current_leader"] for answer in health} == {manager_of(members[0])["current_leader"]}

    handed_out, errors = [], []

    def customer(member, count):
        for _ in range(count):
            answer = member.client.post("/api/v1/vm/a+b")
            if answer.status == 200:
                handed_out.extend([answer.json()["a"]["hostname"], answer.json()["b"]["hostname"]])
            elif answer.status != 503:  # an empty pool is fine; anything else is not
                errors.append(answer.text)

    threads = [threading.Thread(target=customer, args=(member, 6)) for member in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and handed_out
    assert len(handed_out) == len(set(handed_out)), "a VM was handed out twice"
    wait_until(lambda: full(members[1]), 30, "the pools to refill (woken through PostgreSQL)")

    host = check_out(members[0])
    assert members[1].client.delete(f"/api/v1/vm/{host}").status == 200
    seen = members[2].client.get(f"/api/v1/vm/{host}").json()[host]["state"]
    assert seen in ("completed", "destroyed")  # the delete on one process, seen at once on another


def test_killing_the_leader_hands_the_manager_over(cluster, database):
    members = cluster(3)
    wait_until(lambda: full(members[0]), 60, "the pools to fill")
    acknowledged = []
    for _round in range(3):
        pid = leader_pid(members[0])
        leader = next(member for member in members if member.process.pid == pid)
        survivors = [member for member in members if member is not leader]
        acknowledged += [check_out(survivors[0], "a"), check_out(survivors[1], "b")]
        leader.kill()
        wait_until(lambda: leader_pid(survivors[0]) not in (None, pid), 15, "another process to take over")
        assert all(member.client.get("/api/v1/vm").status == 200 for member in survivors)
        wait_until(lambda: full(survivors[1]), 30, "the new leader to refill the pools")
        leader.start()  # back as a stand-by
    assert len(set(acknowledged)) == len(acknowledged)
    for member in members:
        assert member.stop() == 0
    for member in members:
        member.start()
    for host in acknowledged:
        assert members[0].client.get(f"/api/v1/vm/{host}").json()[host]["state"] == "running"
    assert "Traceback" not in "".join(member.log() for member in members)


def test_an_api_process_never_manages_and_a_manager_process_serves_no_http(cluster, database):
    manager, = cluster(1, role="manager")
    api, = cluster(1, role="api")
    wait_until(lambda: full(api), 60, "the pools to fill")
    described = manager_of(api)
    assert described["this_process"] is None and described["leader"] is False
    assert int(described["current_leader"].split(":")[1]) == manager.process.pid
    host = check_out(api)
    wait_until(lambda: full(api), 30, "the manager process to refill, woken by the API process")
    assert host
    with pytest.raises(OSError):
        manager.client.get("/api/v1/vm", timeout=2)
    assert re.search(r"campaigning to run the pool manager as \S+", manager.log())


def clones(member) -> dict:
    """{pool: clones} in one scrape of the member's /prometheus."""
    return values(scrape(member.client)[1], "vmpooler_clone", "vmpooler_clone_count")


def test_a_manager_process_with_prometheus_serves_the_managers_metrics(cluster, database):
    """As the original's ``vmpooler manager`` with ``:prometheus:``: the manager-only process
    answers /prometheus (and /healthcheck) on its port, with the clones it made for the checkouts
    the API process handed out; the API process counts the checkouts."""
    manager, = cluster(1, role="manager", prometheus={})
    api, = cluster(1, role="api", prometheus={})
    wait_until(lambda: full(api), 60, "the pools to fill")
    assert wait_until(lambda: clones(manager) == SIZES and clones(manager), 10, "the fill in the manager's metrics")
    hosts = [check_out(api), check_out(api)]
    wait_until(lambda: full(api), 30, "the manager process to refill, woken by the API process")
    assert wait_until(lambda: clones(manager) == {"a": SIZES["a"] + 2, "b": SIZES["b"]}, 10,
                      "the refill in the manager's metrics") and len(set(hosts)) == 2
    assert values(scrape(api.client)[1], "vmpooler_checkout_success") == {"a": 2}
    assert clones(api) == {}  # the API process clones nothing
    assert manager.client.get("/healthcheck").json() == {"ok": True}
    assert manager.client.get("/api/v1/vm").status == 404
