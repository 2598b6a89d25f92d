"""Prepared statements: a Core statement compiled once per dialect and set of parameters, then
run on the DBAPI cursor of the caller's transaction.

SQLAlchemy's work per execution (the execution context, parameter processing, the result
object) costs about 35 µs a statement, seven times what SQLite takes to run one of ours, and
about 100 µs for the checkout's pick of a ready VM; a checkout and the refill that follows it run
about fifteen statements. The hot ones of db/ (the guarded transitions, their events, the
duration samples, the checkout's pick) go through here instead. The SQL is still SQLAlchemy's,
compiled for the connection's dialect; each value still goes through its column type's bind
processing and each column read through its result processing, so what reaches the database and
what comes back are exactly what ``conn.execute`` would give. Errors come out as SQLAlchemy's own
exception classes, so callers (and ``Database._translated``) handle them as before, and a lost
connection is invalidated as SQLAlchemy would; ``before_cursor_execute`` listeners are called as
for any statement. Only for statements whose every value comes from
the parameters or the statement (no column defaults filled in by SQLAlchemy at execution).
"""
from __future__ import annotations

import collections
import datetime
import functools
from typing import Any, List, Mapping, Protocol, Sequence, Union

from sqlalchemy import exc
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Connection

#: a statement's parameters: one mapping, or several (one row each) for an INSERT of many rows
Params = Union[Mapping[str, Any], Sequence[Mapping[str, Any]]]


class Read(Protocol):
    """The one call shape of a read, prepared or not."""

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any: ...

    def all(self, conn: Connection, params: Mapping[str, Any]) -> List[Any]: ...


class Write(Protocol):
    """The one call shape of a write, prepared or not: the number of rows it changed."""

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int: ...


class _Prepared:
    def __init__(self, statement):
        self.statement = statement
        #: (dialect name, parameter names) -> (sql, [(name, bind processor, constant)], positional)
        self._compiled: dict = {}

    def _run(self, conn: Connection, params: Mapping[str, Any], use, rows: Sequence[Mapping[str, Any]] = ()):
        """Execute in ``conn``'s transaction; ``use(cursor)`` is the answer. With ``rows`` (each
        with ``params``'s keys), once per row in one ``executemany``."""
        dialect = conn.dialect
        key = (dialect.name, tuple(params))
        entry = self._compiled.get(key)
        if entry is None:
            entry = self._compiled[key] = self._compile(dialect, params)
        sql, binds, positional = entry
        values: Any = [_values(binds, positional, row) for row in rows] if rows else _values(binds, positional, params)
        dbapi_connection: Any = conn.connection.dbapi_connection
        cursor = dbapi_connection.cursor()
        try:
            listeners = conn.dispatch.before_cursor_execute
            if listeners:  # instrumentation (statement counts) sees these statements too
                for listener in listeners:
                    listener(conn, cursor, sql, values, None, bool(rows))
            if rows:
                cursor.executemany(sql, values)
            else:
                cursor.execute(sql, values)
            return use(cursor)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, cursor):
                conn.invalidate(error)
            raise exc.DBAPIError.instance(sql, values, error, dialect.loaded_dbapi.Error,
                                          dialect=dialect) from error
        finally:
            cursor.close()

    def _compile(self, dialect, params: Mapping[str, Any]) -> tuple:
        compiled = self.statement.compile(dialect=dialect, column_keys=list(params))
        if "POSTCOMPILE" in compiled.string:  # an expanding IN list: its SQL depends on the values
            raise ValueError(f"{self.statement} has an expanding IN list; give each value a bindparam")
        if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
            raise ValueError(f"{self.statement} needs column defaults at execution; use conn.execute")
        if compiled.positional:
            named = [(name, compiled.binds[name]) for name in compiled.positiontup]
        else:  # each name the SQL renders, once
            named = list({name: bind for bind, name in compiled.bind_names.items()}.items())
        binds = []
        for name, bind in named:
            if name not in params and bind.required:
                raise ValueError(f"{self.statement}: no value for {name}")
            # a literal of the statement (the 1 of ``count + 1``) is a bind with its own value
            constant = None if name in params else bind.effective_value
            binds.append((name, _bind_processor(bind.type.dialect_impl(dialect), dialect), constant))
        return compiled.string, binds, compiled.positional


class PreparedWrite(_Prepared):
    """An INSERT, UPDATE or DELETE whose caller needs only the number of rows it changed."""

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        return self._run(conn, params, _rowcount)

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement once per row (every row with the same keys), in one call to the driver:
        one round trip on PostgreSQL (psycopg pipelines it), no Python per row on SQLite. One row
        is one ``execute``: psycopg's pipeline costs more than it saves for a single statement."""
        if len(rows) == 1:
            self.execute(conn, rows[0])
        elif rows:
            self._run(conn, rows[0], _rowcount, rows)


class PreparedRead(_Prepared):
    """A SELECT (or an INSERT ... RETURNING) whose rows are read by attribute (``vm.id``,
    ``vm.state``), as SQLAlchemy's rows are; each column converted by its type, as SQLAlchemy
    converts it."""

    def __init__(self, statement):
        super().__init__(statement)
        self._columns = list(statement.exported_columns)
        self._row = collections.namedtuple("Row", [column.key for column in self._columns], rename=True)
        self._processors: dict = {}  # dialect name -> [result processor or None] per column

    def first(self, conn: Connection, params: Mapping[str, Any]):
        """The first row, or None."""
        rows = self._rows(conn, params, _first_and_description)
        return rows[0] if rows else None

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list:
        return self._rows(conn, params, _all_and_description)

    def _rows(self, conn: Connection, params: Mapping[str, Any], fetch) -> list:
        rows, description = self._run(conn, params, fetch)
        if not rows:
            return []
        processors = self._processors.get(conn.dialect.name)
        if processors is None:  # as SQLAlchemy asks each type: given the driver's type code
            dialect = conn.dialect
            processors = self._processors[dialect.name] = [
                column.type.dialect_impl(dialect).result_processor(dialect, entry[1])
                for column, entry in zip(self._columns, description)]
        make = self._row._make
        return [make(value if process is None else process(value) for process, value in zip(processors, row))
                for row in rows]


def _values(binds: list, positional: bool, params: Mapping[str, Any]) -> Any:
    """The values of one execution, as the compiled statement takes them."""
    get = params.get
    values = [get(name, constant) if process is None else process(get(name, constant))
              for name, process, constant in binds]
    if positional:
        return values
    return {name: value for (name, _, _), value in zip(binds, values)}


def _bind_processor(impl, dialect):
    """The type's bind processor; for SQLite's DATETIME in its default storage format, one that
    writes the same text faster (every change binds several timestamps: a tenth of a statement's
    Python time went to SQLAlchemy's %-formatting of them)."""
    process = impl.bind_processor(dialect)
    if isinstance(impl, SQLITE_DATETIME) and impl._storage_format == SQLITE_DATETIME._storage_format:
        return functools.partial(_sqlite_datetime, process)
    return process


def _sqlite_datetime(process, value):
    """``process(value)`` for SQLite's DATETIME: naive datetimes (all of ours) as isoformat's text,
    which is SQLAlchemy's format exactly (microseconds always written); anything else as
    SQLAlchemy writes it."""
    if type(value) is datetime.datetime and value.tzinfo is None:
        return value.isoformat(" ", "microseconds")
    return process(value)


def _rowcount(cursor) -> int:
    return cursor.rowcount


def _first_and_description(cursor) -> tuple:
    row = cursor.fetchone()
    return ([row] if row is not None else []), cursor.description


def _all_and_description(cursor) -> tuple:
    return cursor.fetchall(), cursor.description


class PlainRead:
    """A read run through SQLAlchemy's ``conn.execute``, with the call shape of ``PreparedRead``:
    for statements that cannot be prepared (an expanding IN list) or are not hot."""

    def __init__(self, statement):
        self.statement = statement

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        return conn.execute(self.statement, params).first()

    def all(self, conn: Connection, params: Mapping[str, Any]) -> List[Any]:
        return list(conn.execute(self.statement, params))


class PlainWrite:
    """A write run through SQLAlchemy's ``conn.execute``, with the call shape of ``PreparedWrite``
    (``params`` may be a list of rows: one INSERT of many)."""

    def __init__(self, statement):
        self.statement = statement

    def execute(self, conn: Connection, params: Params) -> int:
        return conn.execute(self.statement, params).rowcount
