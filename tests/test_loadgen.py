"""The benchmarks' two load generators (raw sockets in worker processes, http.client in threads)
drive the same scripts and report the same shape of result, against the floor server."""
import json

import pytest

from benchmarks import loadgen
from benchmarks.harness import Server, Workspace, seed_pools
from benchmarks.scenarios import burst


@pytest.fixture
def floor(tmp_path):
    db = str(tmp_path / "floor.db")
    seed_pools(db, {"p": {"ready": 48}})
    with Server(Workspace(str(tmp_path)), "floor", "--db", db) as server:
        yield server


def take_two(index, pool):
    hosts = []
    for _ in range(2):
        status, body = yield "POST", f"/api/v1/vm/{pool}", b"", "checkout"
        assert status == 200
        hosts.append(json.loads(body)[pool]["hostname"])
    yield "SLEEP", 0.001
    return hosts


@pytest.mark.parametrize("generator", [loadgen.run, loadgen.run_threads], ids=["sockets", "threads"])
def test_each_generator_runs_scripts_to_their_end_and_counts_every_answer(floor, generator):
    result = generator(floor.port, take_two, 4, 30, 0, 2, pool="p")
    hosts = [host for client in result.returned for host in client]
    assert len(hosts) == 8 == len(set(hosts))
    assert result.count("checkout", 200) == 8 == result.requests
    assert 0 < result.percentile(50, "checkout") <= result.percentile(99, "checkout")


def test_a_timed_run_stops_by_itself_with_either_generator(floor):
    for generator in (loadgen.run, loadgen.run_threads):
        result = generator(floor.port, loadgen.repeat, 2, 0.3, 0.1, 2, paths=["/floor"])
        assert result.requests > 0 and result.count("GET", 200) == result.requests


def test_the_burst_returns_what_it_took_with_either_generator(floor):
    for generator in (loadgen.run, loadgen.run_threads):
        taken, deleted, hosts = burst(floor.port, "p", 24, generator)
        assert len(hosts) == 24 and deleted.count("delete", 200) == 24
