"""Writes held until the transaction commits, then applied together: changes to rows that many
transactions change, each row once, in one order; and rows appended (events, duration samples),
each table's in one statement.

A day's duration totals (``duration_days``) and a pool's last boot (``pools.last_boot_at``) are
changed by every VM that clones or boots. On PostgreSQL several transactions run at once (the
group commit's batches, db/batch.py); had each changed those rows where its VMs' transitions
stand, two batches would take the same rows in different orders and deadlock. So a transaction
only notes such a change (``defer``) and ``Database`` applies the notes just before its commit:
grouped by row (one statement per row however many samples), sorted by key (every transaction
takes them in one order: no cycle, so no deadlock, however the batches interleave) and last (a
row lock is held only for the commit's round trip). A request's notes inside a batch go with its
SAVEPOINT: rolled back with it (``mark``/``undo``).

Appended rows (``append``: every transition's ``vm_events`` row, every clone's duration samples)
are inserted just before the shared rows are changed, each table's rows by one statement for all
(``executemany``: on SQLite no Python per row, on PostgreSQL one round trip), in the order they
were appended; nothing in a transaction reads them back before its commit.

A connection outside ``Database.write()`` (a test's or a migration's own ``engine.begin()``)
has no notes: ``defer`` and ``append`` apply the change at once.
"""
from __future__ import annotations

from typing import Any, Callable

_NOTES = "vmpooler_shared_rows"


def begin(conn) -> None:
    """A write transaction starts on ``conn``: changes to shared rows are noted from now on."""
    conn.info[_NOTES] = []


def defer(conn, key: tuple, value, apply: Callable) -> None:
    """Note ``value`` for the shared row ``key`` (a tuple, first item the table's name: the
    order rows are taken in); ``apply(conn, key, values)`` makes the change for all of one row's
    values at commit."""
    _note(conn, (_SHARED_ROW, key), value, apply)


def append(conn, table: str, row: dict, insert: Any) -> None:
    """Note ``row`` (its columns' values) to insert into ``table`` at commit: ``insert``, the
    table's prepared INSERT (db/prepared.py), runs once for all the transaction's rows of the
    table (``execute_many``), in the order they were appended."""
    _note(conn, (_APPENDED, (table,)), row, insert)


_APPENDED, _SHARED_ROW = 0, 1  # appended rows go first: the shared rows' locks are held the least


def _note(conn, key: tuple, value, apply: Any) -> None:
    notes = conn.info.get(_NOTES)
    if notes is None:
        _make(conn, key, apply, [value])
    else:
        notes.append((key, value, apply))


def _make(conn, key: tuple, apply: Any, values: list) -> None:
    """A shared row's noted change made, or a table's appended rows inserted (``apply`` is then
    the table's INSERT)."""
    if key[0] == _APPENDED:
        apply.execute_many(conn, values)
    else:
        apply(conn, key[1], values)


def mark(conn) -> int:
    """Where a SAVEPOINT starts, for ``undo``."""
    notes = conn.info.get(_NOTES)
    return 0 if notes is None else len(notes)


def undo(conn, position: int) -> None:
    """The SAVEPOINT begun at ``position`` was rolled back: so are its notes."""
    notes = conn.info.get(_NOTES)
    if notes is not None:
        del notes[position:]


def apply(conn) -> None:
    """Just before the commit: the appended rows inserted, then every noted row changed once, in
    key order."""
    notes = conn.info.get(_NOTES) or []
    grouped: dict = {}
    for key, value, change in notes:
        grouped.setdefault(key, (change, []))[1].append(value)
    for key in sorted(grouped):
        change, values = grouped[key]
        _make(conn, key, change, values)
    conn.info[_NOTES] = []


def end(conn) -> None:
    """The transaction is over (committed or rolled back): nothing is noted any more."""
    conn.info.pop(_NOTES, None)
