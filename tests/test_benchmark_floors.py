"""The benchmark floors of issue 21 run for a bounded count and return sane figures, and do the
database work they stand for (no timing is asserted: speed is measured in benchmarks/)."""
import os
import sqlite3

import pytest

from benchmarks.harness import Server, Workspace, seed_pools, seed_rows
from benchmarks.scenarios import CLIENTS_WRITE, burst

COUNT = CLIENTS_WRITE * 5


def _sane(result, count):
    assert result.count(status=200) == count
    assert result.rate > 0 and result.percentile(99) > 0


def test_the_sqlite_floor_with_the_same_promises_refills_and_destroys(tmp_path):
    workspace = Workspace(str(tmp_path))
    path = workspace.file("floor.db")
    seed_pools(path, {"p": {"ready": COUNT}})
    with Server(workspace, "floor", "--db", path, "--promises") as floor:
        taken, deleted, hosts = burst(floor.port, "p", COUNT)
    _sane(taken, COUNT)
    _sane(deleted, COUNT)
    assert len(set(hosts)) == COUNT
    db = sqlite3.connect(path)
    states = dict(db.execute("SELECT state, count(*) FROM vms GROUP BY state").fetchall())
    assert states == {"ready": COUNT, "destroyed": COUNT}  # every taken VM replaced, every returned one gone
    events = dict(db.execute("SELECT from_state || '>' || to_state, count(*) FROM vm_events "
                             "GROUP BY from_state, to_state").fetchall())
    assert events == {"ready>running": COUNT, "pending>ready": COUNT, "running>completed": COUNT,
                      "completed>destroyed": COUNT, None: COUNT}
    assert db.execute("SELECT count(*) FROM vm_events WHERE from_state IS NULL AND to_state = 'pending' "
                      "AND reason = 'clone requested'").fetchone()[0] == COUNT
    assert db.execute("SELECT count(*) FROM durations WHERE kind = 'clone'").fetchone()[0] == COUNT


def test_the_sqlite_floor_answers_503_when_the_pool_is_empty(tmp_path):
    workspace = Workspace(str(tmp_path))
    path = workspace.file("floor.db")
    seed_pools(path, {"p": {"ready": 0}})
    with Server(workspace, "floor", "--db", path, "--promises") as floor:
        taken, _, hosts = burst(floor.port, "other", CLIENTS_WRITE)
    assert hosts == [] and taken.count(status=503) == CLIENTS_WRITE


@pytest.mark.skipif(not os.environ.get("VMPOOLER_TEST_POSTGRES_URL"), reason="needs VMPOOLER_TEST_POSTGRES_URL")
def test_the_postgres_floor_reads_by_name_and_checks_out_in_one_transaction(tmp_path):
    import psycopg

    from benchmarks import loadgen
    from benchmarks.scaleout import fresh_postgres, libpq

    url = os.environ["VMPOOLER_TEST_POSTGRES_URL"]
    database = fresh_postgres(url)
    names = seed_rows(database, {"p": {"ready": COUNT}})
    database.dispose()
    workspace = Workspace(str(tmp_path))
    with Server(workspace, "floor", "--pg", url) as floor:
        reads = loadgen.run(floor.port, loadgen.repeat, 4, 0.5, 0, 1, paths=[f"/api/v1/vm/{n}" for n in names])
        taken, deleted, hosts = burst(floor.port, "p", COUNT)
        missing = loadgen.run(floor.port, loadgen.repeat, 1, 0.2, 0, 1, paths=["/api/v1/vm/nothing"])
    assert reads.count(status=200) == reads.count() > 0
    assert missing.count(status=404) == missing.count() > 0
    _sane(taken, COUNT)
    _sane(deleted, COUNT)
    assert sorted(hosts) == sorted(names)
    with psycopg.connect(libpq(url)) as conn:
        assert conn.execute("SELECT count(*) FROM vms WHERE state = 'completed'").fetchone()[0] == COUNT
        events = dict(conn.execute("SELECT to_state, count(*) FROM vm_events GROUP BY to_state").fetchall())
    assert events == {"running": COUNT, "completed": COUNT}
