"""The one owner of the database connection: engine, transactions and schema upgrades.

Everything else speaks portable SQLAlchemy Core through ``write()`` and ``read()``. How an
SQLite connection is opened and begins its transactions is db/sqlite.py (``prepare_sqlite``).

Code on the IOLoop (api/, manager/) reaches the state layer through ONE call, ``await
db.run(function, *args)``, ``function`` being a public function of db/ (its first parameter the
``Database``). A function marked ``@writes`` joins the group commit (db/batch.py): requests that
arrive together share one transaction, each in a SAVEPOINT of its own, and are answered after its
commit. Any other function is a read: on SQLite it runs inline (a local file read costs less than
a thread hop), on PostgreSQL in a bounded pool of database threads, so the IOLoop never waits on
the network.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import functools
import logging
import threading
from typing import Any, Callable, Dict, Iterator, Optional

from sqlalchemy import create_engine, exc, text
from sqlalchemy.engine import Connection, Engine

from vmpooler.db import schema, shared
from vmpooler.db.batch import GroupCommit
from vmpooler.db.errors import CONFLICT_SQLSTATES, StoreUnavailable, TransactionConflict, WouldWait
from vmpooler.db.prepared import PreparedWrite
from vmpooler.db.schema import migrations_dir  # noqa: F401 (its callers import it from here)
from vmpooler.db.sqlite import prepare_sqlite, why_cannot_open

log = logging.getLogger(__name__)
#: reads kept by Database.cached before the cache starts afresh
CACHE_ENTRIES = 10000
#: PostgreSQL: threads for reads, and how many group-commit batches may be in flight at once
#: (each holds one connection; SKIP LOCKED lets concurrent batches take different VMs)
READ_THREADS = 8
WRITE_BATCHES = 8


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def writes(function):
    """Mark a public function of db/ as a write: ``Database.run`` hands it to the group commit.
    (An unmarked function that writes is still correct, in a transaction of its own, but not
    batched.)"""
    function.vmpooler_writes = True
    return function


class Database:
    def __init__(self, url: str, busy_timeout_ms: int = 1000):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options: Dict[str, Any] = {"future": True}
        if self.is_sqlite:
            options["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        else:  # every database thread may hold a connection, a batch two (its own and a read's)
            options.update(pool_size=READ_THREADS + WRITE_BATCHES, max_overflow=WRITE_BATCHES)
        self.engine: Engine = create_engine(url, **options)
        if self.is_sqlite:
            prepare_sqlite(self.engine, busy_timeout_ms, self.waits)
        #: counts write transactions (and, on PostgreSQL, other processes' announced changes): a
        #: read cached under an older count may be stale
        self.generation = 0
        self._generation_lock = threading.Lock()
        #: called (from any thread) after each write transaction of this process that may change
        #: what a cached read shows: on PostgreSQL the service announces it to the other processes
        self.on_change: Optional[Callable[[], None]] = None
        self._cache: dict = {}
        self._local = threading.local()  # .batch: the connection of the batch this thread applies
        #: PostgreSQL's database threads, made on first use
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self.group = GroupCommit(self, inline=self.is_sqlite, batches=WRITE_BATCHES)
        #: times the database could not serve (StoreUnavailable raised), for the metrics
        self.unavailable_count = 0

    # --- the IOLoop's way in ----------------------------------------------------------------
    async def run(self, function, *args, **kwargs):
        """``function(self, *args, **kwargs)`` without the IOLoop waiting on the database: a
        ``@writes`` function through the group commit, a read inline on SQLite and in a database
        thread on PostgreSQL."""
        if getattr(function, "vmpooler_writes", False):
            return await self.group.submit(function, args, kwargs)
        if self.is_sqlite:
            return function(self, *args, **kwargs)
        call = functools.partial(function, self, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor(), call)

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The bounded pool of database threads (PostgreSQL): reads, and the group commit's batches."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(READ_THREADS + WRITE_BATCHES,
                                                                   thread_name_prefix="database")
        return self._executor

    # --- transactions -----------------------------------------------------------------------
    @contextlib.contextmanager
    def write(self, invalidates: bool = True) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any error. Inside
        a batch of the group commit it is a SAVEPOINT of the batch's transaction instead, released
        when the block ends and rolled back on any error (so a request's failure undoes only its
        own changes); the batch commits them all. ``invalidates=False``: for a write no cached
        read depends on (the manager's lease, renewed every few seconds, must not empty the cache
        of GET /vm/<host> each time)."""
        batch = getattr(self._local, "batch", None)
        if batch is not None:
            with self._translated():
                with _savepoint(batch):
                    yield batch
            return
        try:
            with self._translated():
                with self._transaction() as connection:
                    yield connection
        finally:
            if invalidates:
                self.bump()  # after the commit: a read cached before it is now stale

    @contextlib.contextmanager
    def batch(self) -> Iterator[Connection]:
        """The one transaction of a group-commit batch (db/batch.py): ``write()`` in this thread
        joins it as a savepoint until the block ends; committed then, rolled back on any error."""
        try:
            with self._translated():
                with self._transaction() as connection:
                    self._local.batch = connection
                    try:
                        yield connection
                    finally:
                        self._local.batch = None
        finally:
            self.bump()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction whose changes to shared rows (db/shared.py) are applied last, in
        one order, just before it commits."""
        with self.engine.begin() as connection:
            shared.begin(connection)
            try:
                yield connection
                shared.apply(connection)
            finally:
                shared.end(connection)

    def bump(self) -> None:
        """A write of this process committed: cached reads are stale, and the others are told."""
        self._advance()
        if self.on_change is not None:
            self.on_change()

    def changed_elsewhere(self) -> None:
        """Another process announced a change (PostgreSQL, db/notify.py): cached reads are stale."""
        self._advance()

    def _advance(self) -> None:
        with self._generation_lock:
            self.generation += 1

    def cached(self, key, load):
        """``load(conn)`` in a read transaction, reused for ``key`` until the next write transaction
        of this process commits. Exact because every write goes through ``write()`` and one service
        process owns an SQLite file; for hot reads that many clients repeat (GET /vm/<host>). On a
        shared database (PostgreSQL) another process's write would not invalidate it, so there
        every read goes to the database."""
        if not self.is_sqlite:
            with self.read() as conn:
                return load(conn)
        generation = self.generation
        hit = self._cache.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1]
        with self.read() as conn:
            value = load(conn)
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = (generation, value)
        return value

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only view, consistent for the block (a deferred transaction, never a lock)."""
        with self._translated():
            with self.engine.connect() as connection:
                connection = connection.execution_options(vmpooler_read=True)
                with connection.begin():
                    yield connection

    @contextlib.contextmanager
    def one_statement(self) -> Iterator[Connection]:
        """For a read of one prepared statement (db/prepared.py), which sees one snapshot by
        itself: it runs outside a transaction, without the BEGIN and COMMIT of read() (on
        PostgreSQL two round trips of three; on SQLite, whose driver runs in autocommit here, two
        statements and SQLAlchemy's transaction bookkeeping). A statement run through
        SQLAlchemy's ``execute`` would begin a (read) transaction: use read() for those."""
        options: Dict[str, Any] = {"vmpooler_read": True} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"}
        with self._translated():
            with self.engine.connect() as connection:
                yield connection.execution_options(**options)

    @contextlib.contextmanager
    def not_waiting(self):
        """SQLite: write transactions begun in this thread inside the block do not wait for
        another process's lock (busy timeout 0) and raise WouldWait instead, which the caller
        retries where waiting blocks nobody (the group commit: in a thread)."""
        self._local.no_wait = True
        try:
            yield
        finally:
            self._local.no_wait = False

    def waits(self) -> bool:
        """Whether a write begun in this thread waits for a lock (see ``not_waiting``)."""
        return not getattr(self._local, "no_wait", False)

    @contextlib.contextmanager
    def _translated(self):
        try:
            yield
        except exc.DBAPIError as error:
            if _sqlstate(error) in CONFLICT_SQLSTATES:  # not a lock wait: the database asks for a rerun
                raise TransactionConflict(_conflict(error)) from error
            if isinstance(error, exc.OperationalError):
                meaning = _describe(error)
                if meaning == _CANNOT_OPEN and self.is_sqlite:
                    meaning = why_cannot_open(self.engine.url.database) or meaning
                if meaning in _LOCKED and not self.waits():
                    raise WouldWait(meaning) from error
                self.unavailable_count += 1
                if meaning in _CONNECTION_SPOILING:
                    self.recycle_connections(meaning)
                raise StoreUnavailable(meaning) from error
            if error.connection_invalidated:
                self.unavailable_count += 1
                raise StoreUnavailable("the database connection was lost") from error
            raise

    def recycle_connections(self, why: str) -> None:
        """Close every pooled connection; the next use opens new ones. After a read-only or I/O
        error a connection may be spoiled for good (SQLite keeps a descriptor it had to open
        read-only, whatever the file becomes), so none is trusted once the fault has passed.
        Connections in use are not touched: they are dropped when returned (their pool is gone)."""
        log.warning("closing the pooled database connections (%s); new ones are opened as needed", why)
        self.engine.dispose(close=True)

    def upgrade(self) -> "schema.UpgradeReport":
        """Bring the schema to the newest migration (idempotent): all or nothing, an SQLite
        database copied first; a database newer than the code refused (db/schema.py). A database
        that cannot be reached or read at all: StoreUnavailable."""
        with self._translated():
            return schema.upgrade(self)

    def dispose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.engine.dispose()


_SAVEPOINT = PreparedWrite(text("SAVEPOINT vmpooler_request"))
_ROLLBACK_TO_SAVEPOINT = PreparedWrite(text("ROLLBACK TO SAVEPOINT vmpooler_request"))
_RELEASE_SAVEPOINT = PreparedWrite(text("RELEASE SAVEPOINT vmpooler_request"))


@contextlib.contextmanager
def _savepoint(connection: Connection):
    """A SAVEPOINT of the batch's transaction, emitted directly (db/prepared.py): SQLAlchemy's
    begin_nested() costs more Python than the statement costs the database."""
    _SAVEPOINT.execute(connection, {})
    notes = shared.mark(connection)
    try:
        yield
    except BaseException:
        # undoes this request only; if even that fails the transaction is broken, and that error
        # (the database's, so a StoreUnavailable) fails the whole batch
        shared.undo(connection, notes)
        _ROLLBACK_TO_SAVEPOINT.execute(connection, {})
        _RELEASE_SAVEPOINT.execute(connection, {})
        raise
    _RELEASE_SAVEPOINT.execute(connection, {})


def upsert(conn: Connection, table, keys: tuple, **values) -> None:
    """Insert a row of ``table``, or update the one with the same ``keys`` columns, in one
    statement (INSERT ... ON CONFLICT DO UPDATE, which SQLite and PostgreSQL both speak), so two
    writers of one row never race into a duplicate key."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    statement = dialect.insert(table).values(**values)
    conn.execute(statement.on_conflict_do_update(
        index_elements=list(keys), set_={key: value for key, value in values.items() if key not in keys}))


#: errors after which a pooled connection is not reused (Database.recycle_connections). Not
#: "cannot be opened": that is a new connection's failure (a missing directory, no file descriptor
#: left), and closing the pooled ones would only hand their descriptors to whoever asks next.
_READ_ONLY, _IO_ERROR, _CANNOT_OPEN = ("the database is read-only", "the database had a disk I/O error",
                                       "the database file cannot be opened")
_CONNECTION_SPOILING = (_READ_ONLY, _IO_ERROR)


_LOCKED = ("the database is locked by another process", "the database is busy")


def _sqlstate(error: exc.DBAPIError):
    """The SQLSTATE of a PostgreSQL error (psycopg 3: ``sqlstate``, psycopg2: ``pgcode``); None
    for SQLite."""
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)


def _conflict(error: exc.DBAPIError) -> str:
    kind = "deadlock detected" if _sqlstate(error) == "40P01" else "serialization failure"
    return f"the transaction conflicted with a concurrent one ({kind}) and was rolled back"


def _describe(error: exc.OperationalError) -> str:
    text = str(getattr(error, "orig", error)).lower()
    for needle, meaning in (("locked", _LOCKED[0]),
                            ("busy", _LOCKED[1]),
                            ("full", "the disk holding the database is full"),
                            ("readonly", _READ_ONLY),
                            ("read-only", _READ_ONLY),
                            ("unable to open", _CANNOT_OPEN),
                            ("disk i/o", _IO_ERROR),
                            ("connection refused", "the database server refused the connection"),
                            ("could not translate host name", "the database server's name does not resolve"),
                            ("timeout expired", "the database server did not answer in time"),
                            ("password authentication failed", "the database refused the credentials")):
        if needle in text:
            return meaning
    return "the database is unavailable"
