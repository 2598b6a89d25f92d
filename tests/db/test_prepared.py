"""Prepared statements (db/prepared.py) give exactly what SQLAlchemy's own execution gives: the
same stored values (a datetime as SQLAlchemy stores it on SQLite), the same rows read back, row
counts, literals of the statement, and SQLAlchemy's exception classes. On SQLite and PostgreSQL."""
import datetime

import pytest
from sqlalchemy import bindparam, event, exc, insert, select, update

from tests.conftest import add_vm, make_config
from vmpooler.db import vm_statements
from vmpooler.db.models import duration_days, vm_events, vms
from vmpooler.db.prepared import PreparedWrite

WHEN = datetime.datetime(2026, 12, 1, 9, 30, 0)  # no microseconds: SQLAlchemy still stores ".000000"
INSERT_EVENT = PreparedWrite(insert(vm_events))
EVENT = {"vm_id": 1, "vm_name": "vm1", "pool": "a", "at": WHEN, "from_state": None, "to_state": "pending",
         "reason": "test"}


def _pool(db, names):
    pool = make_config(pools=[{"name": "a", "template": "t", "size": len(names)}]).pools[0]
    for name in names:
        add_vm(db, pool, name=name)
    return pool


def _stored_at(db, vm_id):
    """The event's ``at`` as the database holds it (a string on SQLite), read without SQLAlchemy's types."""
    with db.read() as conn:
        return conn.exec_driver_sql(f"SELECT at FROM vm_events WHERE vm_id = {int(vm_id)} ORDER BY id DESC").first()[0]


def test_a_prepared_insert_stores_what_sqlalchemy_stores(db):
    with db.write() as conn:
        assert INSERT_EVENT.execute(conn, EVENT) == 1
        conn.execute(insert(vm_events), {**EVENT, "vm_id": 2})
    assert _stored_at(db, 1) == _stored_at(db, 2)
    with db.read() as conn:
        rows = conn.execute(select(vm_events.c.vm_id, vm_events.c.at, vm_events.c.from_state)
                            .order_by(vm_events.c.vm_id)).all()
    assert [tuple(row) for row in rows] == [(1, WHEN, None), (2, WHEN, None)]


@pytest.mark.parametrize("at", [
    WHEN, WHEN.replace(microsecond=7), datetime.datetime(2026, 12, 31, 23, 59, 59, 999999),
    datetime.datetime(5, 1, 2, 3, 4, 5),  # a year below 1000: still four digits
    datetime.datetime(2026, 12, 1, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),  # aware
    datetime.date(2026, 12, 1),  # a date where a datetime belongs: midnight
], ids=["whole second", "microseconds", "last microsecond", "year 5", "aware", "date"])
def test_every_timestamp_is_stored_as_sqlalchemy_stores_it(db, at):
    """The faster text for SQLite's DATETIME (db/prepared.py) is SQLAlchemy's, byte for byte; what
    it does not take (an aware datetime, a date) goes through SQLAlchemy's own processor."""
    with db.write() as conn:
        INSERT_EVENT.execute(conn, {**EVENT, "at": at})
        conn.execute(insert(vm_events), {**EVENT, "vm_id": 2, "at": at})
    assert _stored_at(db, 1) == _stored_at(db, 2)


def test_row_counts_and_the_statements_own_literals(db):
    """``count + 1`` carries its 1 as a bind of its own; a guard that matches nothing counts 0."""
    add = PreparedWrite(update(duration_days).where(duration_days.c.kind == bindparam("b_kind"))
                        .values(count=duration_days.c.count + 1))
    with db.write() as conn:
        conn.execute(insert(duration_days), [{"kind": "boot", "day": "2026-12-01", "pool": p, "count": 1, "total": 1.5,
                                              "low": 1.5, "high": 1.5} for p in ("a", "b")])
        assert add.execute(conn, {"b_kind": "boot"}) == 2
        assert add.execute(conn, {"b_kind": "clone"}) == 0
    with db.read() as conn:
        assert conn.execute(select(duration_days.c.count)).scalars().all() == [2, 2]


def test_a_prepared_read_returns_the_row_sqlalchemy_returns(db):
    _pool(db, ["vm-x"])
    both = vm_statements.oldest_ready(1)
    with db.read() as conn:
        prepared = both.first(conn, {"pool_0": "a"})
        plain = conn.execute(both.statement, {"pool_0": "a"}).first()
        missing = both.first(conn, {"pool_0": "no-such-pool"})
    assert prepared == tuple(plain) and missing is None
    assert prepared.name == "vm-x" and isinstance(prepared.ready_at, datetime.datetime)
    assert prepared._fields == tuple(plain._fields)


def test_an_alias_of_several_pools_is_one_statement_per_pool_count(db):
    pool = make_config(pools=[{"name": "a", "template": "t", "size": 1}, {"name": "b", "template": "t", "size": 1}])
    add_vm(db, pool.pools[1], name="in-b")
    with db.read() as conn:
        found = vm_statements.oldest_ready(2).first(conn, {"pool_0": "a", "pool_1": "b"})
    assert found.name == "in-b" and vm_statements.oldest_ready(2) is vm_statements.oldest_ready(2)


def test_errors_are_sqlalchemys_and_undo_nothing_else(db):
    """A duplicate key is an IntegrityError as from conn.execute (callers catch that class), and
    the transaction it broke is rolled back whole."""
    _pool(db, ["vm-y"])
    with db.read() as conn:
        vm_id = conn.execute(select(vms.c.id)).scalar_one()
    duplicate = PreparedWrite(insert(vms))
    row = {"id": vm_id, "name": "other", "pool": "a", "provider": "dummy", "template": "t", "state": "ready",
           "state_changed_at": WHEN, "created_at": WHEN, "clone_attempts": 0, "destroy_attempts": 0}
    with pytest.raises(exc.IntegrityError):
        with db.write() as conn:
            INSERT_EVENT.execute(conn, {**EVENT, "vm_id": vm_id})
            duplicate.execute(conn, row)
    with db.read() as conn:
        assert conn.execute(select(vm_events.c.id).where(vm_events.c.reason == "test")).first() is None


def test_a_statement_needing_column_defaults_is_refused(db):
    """insert(vms) without clone_attempts would need SQLAlchemy's default at execution: refused
    rather than sent without it."""
    row = {"name": "n", "pool": "a", "provider": "dummy", "template": "t", "state": "pending",
           "state_changed_at": WHEN, "created_at": WHEN}
    with pytest.raises(ValueError, match="defaults"):
        with db.write() as conn:
            PreparedWrite(insert(vms)).execute(conn, row)


def test_statement_listeners_see_prepared_statements(db):
    """Instrumentation on the engine (statement counts, as tests and operators attach) sees a
    prepared statement as it sees any other."""
    seen = []
    listener = lambda _conn, _cursor, statement, parameters, *_args: seen.append((statement, parameters))
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        with db.write() as conn:
            INSERT_EVENT.execute(conn, EVENT)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert [statement for statement, _ in seen if statement.startswith("INSERT INTO vm_events")]
