"""Copying a whole database to another (``vmpooler db copy --to URL``): the move from the embedded
SQLite file to PostgreSQL.

The source is read in one snapshot (a deferred transaction on SQLite in WAL mode, REPEATABLE READ on
PostgreSQL), so a running service does not tear the copy; the target is written in one transaction,
so a failed copy leaves it as empty as it was. A target that holds any row is refused: the copy never
merges into, or overwrites, another database.
"""
from __future__ import annotations

import dataclasses

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config as AlembicConfig
from sqlalchemy import Integer, func, insert, select, text

from vmpooler.db.database import Database, migrations_dir
from vmpooler.db.models import metadata

#: rows read and inserted at a time, so a million duration samples never sit in memory at once
CHUNK = 2000


class CopyRefused(Exception):
    """The copy cannot start (or did not match); nothing was written to the target."""


@dataclasses.dataclass(frozen=True)
class TableCopy:
    table: str
    rows: int


def copy_database(source: Database, target: Database) -> list:
    """Copy every table of ``source`` into the empty ``target``; returns one TableCopy per table,
    after checking that the target holds exactly the rows read from the source."""
    if source.engine.url == target.engine.url:
        raise CopyRefused("the source and the target are the same database")
    _require_head(source, "the source")
    target.upgrade()
    occupied = [name for name, count in _counts(target.engine.connect()).items() if count]
    if occupied:
        raise CopyRefused("the target already holds data (in " + ", ".join(occupied) + "); "
                          "copy only into an empty database")
    with _snapshot(source) as reading:
        expected = _counts(reading, close=False)
        with target.engine.begin() as writing:
            for table in metadata.sorted_tables:  # parents before the rows that refer to them
                _copy_table(reading, writing, table)
            if writing.dialect.name == "postgresql":
                _advance_sequences(writing)
    copied = _counts(target.engine.connect())
    wrong = [f"{name}: {expected[name]} read, {copied.get(name)} in the target"
             for name in expected if copied.get(name) != expected[name]]
    if wrong:
        raise CopyRefused("the copy does not match: " + "; ".join(wrong))
    return [TableCopy(name, count) for name, count in expected.items()]


def _require_head(db: Database, which: str) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", migrations_dir())
    head = ScriptDirectory.from_config(config).get_current_head()
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current != head:
        raise CopyRefused(f"{which} is at schema revision {current or 'none'}, not {head}: "
                          "run 'vmpooler db upgrade' on it first")


class _snapshot:
    """A connection reading one consistent view of the whole database."""

    def __init__(self, db: Database):
        self.db = db

    def __enter__(self):
        options = {"isolation_level": "REPEATABLE READ"} if self.db.engine.dialect.name == "postgresql" else {}
        self.conn = self.db.engine.connect().execution_options(vmpooler_read=True, **options)
        self.transaction = self.conn.begin()
        return self.conn

    def __exit__(self, *exc):
        self.transaction.rollback()  # read only: nothing to keep
        self.conn.close()


def _counts(conn, close: bool = True) -> dict:
    try:
        return {table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in metadata.sorted_tables}
    finally:
        if close:
            conn.close()


def _copy_table(reading, writing, table) -> None:
    order = list(table.primary_key.columns) or list(table.columns)
    result = reading.execution_options(stream_results=True).execute(select(table).order_by(*order))
    statement = insert(table)
    while True:
        rows = result.fetchmany(CHUNK)
        if not rows:
            break
        writing.execute(statement, [dict(row._mapping) for row in rows])


def _advance_sequences(writing) -> None:
    """Rows were inserted with their ids, which PostgreSQL's sequences did not hand out: move each
    sequence past the largest id, so the service's next insert does not collide."""
    for table in metadata.sorted_tables:
        columns = list(table.primary_key.columns)
        if len(columns) != 1 or not isinstance(columns[0].type, Integer):
            continue
        column = columns[0].name
        writing.execute(text(
            f"SELECT setval(pg_get_serial_sequence(:table, :column), "
            f"COALESCE((SELECT MAX({column}) FROM {table.name}), 0) + 1, false)"),
            {"table": table.name, "column": column})
