"""The group commit (db/batch.py): write requests submitted together share one transaction, each
all-or-nothing in its own savepoint, answered in order and only after the commit. Runs on SQLite
(the batch inline on the loop) and PostgreSQL (the batch in a database thread)."""
import asyncio
import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import event, exc, func, select

from tests.conftest import add_vm, make_config
from vmpooler.db import tokens as token_store
from vmpooler.db import checkout as checkout_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import Database, StoreUnavailable, utcnow
from vmpooler.db.models import tokens, vm_events, vms

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pool(db, ready):
    pool = make_config(pools=[{"name": "a", "template": "t", "size": ready}]).pools[0]
    for _ in range(ready):
        add_vm(db, pool)
    return pool


def _checkout(db, count):
    return db.run(checkout_store.checkout, [checkout_store.Want("a", ("a",), count)], utcnow(), 24)


def _running(db) -> int:
    with db.read() as conn:  # a connection of its own: sees only what is committed
        return conn.execute(select(func.count()).select_from(vms).where(vms.c.state == "running")).scalar()


def _checkout_events(db) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(vm_events)
                            .where(vm_events.c.to_state == "running")).scalar()


async def _one_batch(db, *requests):
    """Submit ``requests`` in one loop turn; their outcomes, and how many batches committed. One
    batch slot (on PostgreSQL requests spread over free slots first) and no time bound (there for
    the IOLoop's sake: a loaded machine must not split the batch)."""
    db.group.batches, db.group.max_seconds = 1, 60
    before = db.group.stats["batches"]
    outcomes = await asyncio.gather(*requests, return_exceptions=True)
    return outcomes, db.group.stats["batches"] - before


def test_a_shortfall_rolls_back_that_checkout_only(db):
    _pool(db, 3)

    async def scenario():
        return await _one_batch(db, _checkout(db, 1), _checkout(db, 5), _checkout(db, 2))

    (first, short, third), batches = asyncio.run(scenario())
    assert batches == 1, "the three checkouts were not one batch: the test proves nothing"
    assert isinstance(short, checkout_store.Shortfall)
    taken = first["a"] + third["a"]
    assert len(taken) == len(set(taken)) == 3  # the neighbours saw each other's changes: no VM twice
    assert _running(db) == 3 and _checkout_events(db) == 3  # nothing of the failed one, all of the others


def test_a_batchs_events_are_one_statement_in_the_order_they_happened(db):
    """Every event of a transaction is inserted by one statement as it commits (db/shared.py), in
    the order the changes were made: the three checkouts' in the order of the requests."""
    _pool(db, 3)
    inserts = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO vm_events"):
            inserts.append((executemany, len(parameters) if executemany else 1))
    event.listen(db.engine, "before_cursor_execute", seen)

    async def scenario():
        return await _one_batch(db, _checkout(db, 1), _checkout(db, 1), _checkout(db, 1))

    outcomes, batches = asyncio.run(scenario())
    event.remove(db.engine, "before_cursor_execute", seen)
    assert batches == 1 and inserts == [(True, 3)]
    taken = [outcome["a"][0].name for outcome in outcomes]
    with db.read() as conn:
        in_order = conn.execute(select(vm_events.c.vm_name).where(vm_events.c.to_state == "running")
                                .order_by(vm_events.c.id)).scalars().all()
    assert in_order == taken


def test_answers_come_in_order_and_after_the_commit(db):
    _pool(db, 4)
    answered = []

    async def checkout(label):
        hosts = await _checkout(db, 1)
        # the moment of the answer: everything of the batch is committed (seen by another connection)
        answered.append((label, _running(db)))
        return hosts

    async def scenario():
        return await _one_batch(db, *(checkout(label) for label in "abcd"))

    _outcomes, batches = asyncio.run(scenario())
    assert batches == 1
    assert answered == [("a", 4), ("b", 4), ("c", 4), ("d", 4)]


def test_a_failed_commit_fails_every_request_of_the_batch(db):
    """The batch as a whole fails: each request gets the StoreUnavailable (the API's 503) it would
    have got alone, and none of their changes is in the database, though each was applied."""
    _pool(db, 3)

    def fail_commit(_conn):
        raise exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    async def scenario():
        event.listen(db.engine, "commit", fail_commit)
        try:
            return await _one_batch(db, _checkout(db, 1), _checkout(db, 1),
                                    db.run(token_store.create, "jdoe", "f" * 64, "ffffffff", utcnow()))
        finally:
            event.remove(db.engine, "commit", fail_commit)

    outcomes, _batches = asyncio.run(scenario())
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
    assert len({id(outcome) for outcome in outcomes}) == 3  # one error each: each is raised in its own handler
    assert _running(db) == 0 and _checkout_events(db) == 0
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(tokens)).scalar() == 0

    async def again():  # and the next batch works
        return await _checkout(db, 1)
    assert len(asyncio.run(again())["a"]) == 1


def test_an_error_inside_a_request_does_not_break_the_transaction(db):
    """A request whose statement fails (a duplicate token hash: an IntegrityError) is rolled back to
    its savepoint; on PostgreSQL the transaction stays usable for the requests after it."""
    _pool(db, 2)
    token_store.create(db, "jdoe", "e" * 64, "eeeeeeee", utcnow())

    async def scenario():
        return await _one_batch(db, _checkout(db, 1),
                                db.run(token_store.create, "jdoe", "e" * 64, "eeeeeeee", utcnow()),
                                _checkout(db, 1))

    (first, duplicate, third), batches = asyncio.run(scenario())
    assert batches == 1
    assert isinstance(duplicate, exc.IntegrityError)
    assert len(first["a"]) == len(third["a"]) == 1 and _running(db) == 2


def test_reads_are_not_batched(db):
    """A read runs by itself (inline on SQLite, in a database thread on PostgreSQL): never in a
    batch's transaction, so it cannot hold the write lock nor fail with a batch."""
    _pool(db, 1)

    async def scenario():
        return await _one_batch(db, db.run(vm_store.pending), db.run(token_store.by_hash, "0" * 64))

    (pending, token), batches = asyncio.run(scenario())
    assert (pending, token, batches) == ([], None, 0)


KILLED_MID_BATCH = """
import asyncio, os, signal, sys
from vmpooler.db import checkout as checkout_store
from vmpooler.db.database import Database, utcnow, writes

@writes
def die(db):
    os.kill(os.getpid(), signal.SIGKILL)

async def main(db):
    want = [checkout_store.Want("a", ("a",), 1)]
    first = await db.run(checkout_store.checkout, want, utcnow(), 24)  # a batch of its own, committed
    print(first["a"][0].name, flush=True)
    await asyncio.gather(db.run(checkout_store.checkout, want, utcnow(), 24), db.run(die),
                         db.run(checkout_store.checkout, want, utcnow(), 24))
    print("survived", flush=True)

database = Database(sys.argv[1])
database.group.batches, database.group.max_seconds = 1, 60  # one batch, not split by a loaded machine
asyncio.run(main(database))
"""


def test_kill_9_in_the_middle_of_a_batch_loses_only_unanswered_requests(db):
    """A process killed while a batch is applied (two checkouts done, not committed): after it,
    the acknowledged checkout is there and nothing of the interrupted batch is."""
    _pool(db, 4)
    url = db.url if db.is_sqlite else os.environ["VMPOOLER_TEST_POSTGRES_URL"]
    result = subprocess.run([sys.executable, "-c", KILLED_MID_BATCH, url], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    acknowledged = result.stdout.split()
    assert len(acknowledged) == 1, result.stdout
    db.dispose()  # a fresh view of the database the dead process left
    with db.read() as conn:
        running = [row.name for row in conn.execute(select(vms.c.name).where(vms.c.state == "running"))]
    assert running == acknowledged
    assert _checkout_events(db) == 1
    if db.is_sqlite:
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
