"""Writes under concurrency on PostgreSQL (issue 18 item 1): rows many transactions change (a
day's duration totals) are taken in one order, so opposite orders never deadlock; a transaction
the database aborts for a conflict (deadlock detected, serialization failure) is run again, its
batch's neighbours are not failed by it, and it never reads as a lock. The conflicts here are
PostgreSQL's own errors (a real deadlock between two transactions; RAISE with the SQLSTATE the
database uses), met by the real group commit."""
import asyncio
import datetime
import threading

import pytest
from sqlalchemy import select, text

from tests.conftest import add_vm, make_config
from tests.db.test_group_commit import _checkout, _one_batch, _running
from vmpooler.db import batch
from vmpooler.db import stats
from vmpooler.db import tokens as token_store
from vmpooler.db.database import utcnow, writes
from vmpooler.db.errors import TransactionConflict
from vmpooler.db.models import duration_days

#: PostgreSQL aborts the transaction with the SQLSTATE of a detected deadlock
_ABORTED_FOR_A_DEADLOCK = text("DO $$ BEGIN RAISE EXCEPTION 'deadlock detected (test)' "
                               "USING ERRCODE = 'deadlock_detected'; END $$")


def postgresql_only(db):
    if db.is_sqlite:
        pytest.skip("SQLite serialises writers with its write lock: it has no deadlocks to retry")


@writes
def _aborted(db, calls: list, times: int) -> str:
    """A write the database aborts for a deadlock the first ``times`` times it runs."""
    with db.write() as conn:
        calls.append(1)
        if len(calls) <= times:
            conn.execute(_ABORTED_FOR_A_DEADLOCK)
        return "done"


def _pool(db, ready):
    pool = make_config(pools=[{"name": "a", "template": "t", "size": ready}]).pools[0]
    for _ in range(ready):
        add_vm(db, pool)
    return pool


def test_a_request_aborted_for_a_deadlock_is_run_again_and_its_neighbours_commit(db):
    postgresql_only(db)
    _pool(db, 2)
    calls = []

    async def scenario():
        return await _one_batch(db, _checkout(db, 1), db.run(_aborted, calls, 1), _checkout(db, 1))

    before = db.group.stats["conflicted_batches"]
    (first, aborted, third), _ = asyncio.run(scenario())
    assert db.group.stats["conflicted_batches"] == before + 1, "the three requests were not one batch"
    assert aborted == "done" and len(calls) == 2
    assert len(first["a"]) == len(third["a"]) == 1 and first["a"] != third["a"]
    assert _running(db) == 2  # each checkout once: the rolled-back batch left nothing behind


def test_a_request_that_keeps_conflicting_fails_alone_and_not_as_a_lock(db, monkeypatch):
    postgresql_only(db)
    monkeypatch.setattr(batch, "CONFLICT_PAUSE", 0.001)
    _pool(db, 2)
    calls = []

    async def scenario():
        return await _one_batch(db, _checkout(db, 1), db.run(_aborted, calls, 1000), _checkout(db, 1))

    (first, aborted, third), _ = asyncio.run(scenario())
    assert isinstance(aborted, TransactionConflict)
    assert "deadlock detected" in str(aborted) and "lock" not in str(aborted).replace("deadlock", "")
    assert len(calls) == 1 + 1 + batch.CONFLICT_RETRIES  # in the batch, then alone and its reruns
    assert "a" in first and "a" in third and _running(db) == 2


def _day_totals(db) -> dict:
    with db.read() as conn:
        return {row.pool: (row.count, row.total) for row in conn.execute(select(duration_days))}


def test_day_totals_changed_in_opposite_orders_never_deadlock(db):
    """Two transactions each add a sample to pool a's and pool b's day totals, in opposite orders,
    both holding their first change while the other makes its own: row locks taken where the
    samples are recorded would deadlock (PostgreSQL aborts one); taken at commit in one order,
    both commit."""
    postgresql_only(db)
    both_started = threading.Barrier(2, timeout=10)
    outcomes = {}

    def record(label, first, second):
        try:
            with db.write() as conn:
                now = utcnow()
                stats.record_duration(conn, "clone", first, f"{label}-1", 1.0, now)
                both_started.wait()
                stats.record_duration(conn, "clone", second, f"{label}-2", 2.0, now)
            outcomes[label] = "committed"
        except Exception as error:  # the outcome is what the test looks at
            outcomes[label] = repr(error)

    threads = [threading.Thread(target=record, args=("x", "a", "b")),
               threading.Thread(target=record, args=("y", "b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == {"x": "committed", "y": "committed"}
    assert _day_totals(db) == {"a": (2, 3.0), "b": (2, 3.0)}


def test_tokens_touched_in_opposite_orders_never_deadlock(db):
    """Two group-commit batches (as db/batch.py runs them: one transaction, each request a
    savepoint) each touch two tokens, in opposite orders, both holding their first touch while the
    other makes its own: both commit, and both tokens show the last use of the batch that
    committed last (the rows are taken in one order, so one batch waits for the other's commit)."""
    postgresql_only(db)
    now = utcnow()
    for digest in ("a" * 64, "b" * 64):
        token_store.create(db, "jdoe", digest, digest[:8], now)
    both_started = threading.Barrier(2, timeout=10)
    outcomes = {}

    def touch(label, first, second, minutes):
        try:
            with db.batch():
                token_store.touch(db, first, now + datetime.timedelta(minutes=minutes))
                both_started.wait()
                token_store.touch(db, second, now + datetime.timedelta(minutes=minutes))
            outcomes[label] = "committed"
        except Exception as error:  # the outcome is what the test looks at
            outcomes[label] = repr(error)

    threads = [threading.Thread(target=touch, args=("x", "a" * 64, "b" * 64, 1)),
               threading.Thread(target=touch, args=("y", "b" * 64, "a" * 64, 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == {"x": "committed", "y": "committed"}
    last_uses = {token_store.by_hash(db, digest).last_used_at for digest in ("a" * 64, "b" * 64)}
    assert len(last_uses) == 1 and last_uses <= {now + datetime.timedelta(minutes=m) for m in (1, 2)}


@writes
def _record_then(db, pool: str, seconds: float, fail: bool) -> None:
    with db.write() as conn:
        stats.record_duration(conn, "boot", pool, f"{pool}-{seconds}", seconds, utcnow())
        if fail:
            raise ValueError("this request fails after recording its sample")


def test_a_request_rolled_back_in_its_batch_leaves_nothing_in_the_day_totals(db):
    async def scenario():
        return await _one_batch(db, db.run(_record_then, "a", 5.0, True), db.run(_record_then, "a", 7.0, False),
                                db.run(_record_then, "b", 1.0, False), db.run(_record_then, "a", 9.0, False))

    outcomes, batches = asyncio.run(scenario())
    assert batches == 1, "the requests were not one batch: the test proves nothing"
    assert isinstance(outcomes[0], ValueError) and outcomes[1:] == [None, None, None]
    assert _day_totals(db) == {"a": (2, 16.0), "b": (1, 1.0)}
    with db.read() as conn:
        row = conn.execute(select(duration_days).where(duration_days.c.pool == "a")).one()
    assert (row.low, row.high) == (7.0, 9.0)
