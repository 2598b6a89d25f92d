"""The one owner of the database connection: engine, transactions and schema upgrades.

Everything else speaks portable SQLAlchemy Core through ``write()`` and ``read()``. The only
SQLite-specific code in the project is in ``_prepare_sqlite`` below.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os

from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)
#: reads kept by Database.cached before the cache starts afresh
CACHE_ENTRIES = 10000
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def migrations_dir() -> str:
    """Alembic's scripts: installed inside the package as ``vmpooler/_migrations`` (setup.py maps
    the top-level migrations/ there), or the repository's migrations/ in a checkout."""
    installed = os.path.join(PACKAGE, "_migrations")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(PACKAGE), "migrations")


class StoreUnavailable(Exception):
    """The database cannot serve the request now (locked, full, read-only, gone). Nothing was
    written; the API answers 503 and the manager tries again on its next pass."""


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Database:
    def __init__(self, url: str, busy_timeout_ms: int = 1000):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options = {"future": True}
        if self.is_sqlite:
            options["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        self.engine: Engine = create_engine(url, **options)
        if self.is_sqlite:
            _prepare_sqlite(self.engine, busy_timeout_ms)
        #: counts write transactions; a read cached under an older count may be stale
        self.generation = 0
        self._cache: dict = {}
        #: times the database could not serve (StoreUnavailable raised), for the metrics
        self.unavailable_count = 0

    @contextlib.contextmanager
    def write(self) -> Connection:
        """One write transaction: committed when the block ends, rolled back on any error."""
        try:
            with self._translated():
                with self.engine.begin() as connection:
                    yield connection
        finally:
            self.generation += 1  # after the commit: a read cached before it is now stale

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
    def read(self) -> Connection:
        """A read-only view, consistent for the block (a deferred transaction, never a lock)."""
        with self._translated():
            with self.engine.connect() as connection:
                connection = connection.execution_options(vmpooler_read=True)
                with connection.begin():
                    yield connection

    def ping(self) -> None:
        """Raise StoreUnavailable unless a write transaction can start now (it writes nothing;
        on SQLite it takes the write lock, so a locked or read-only database fails). Blocking: for
        GET /healthcheck, which runs it in a thread."""
        with self._translated():
            with self.engine.begin() as connection:
                connection.execute(text("SELECT 1"))

    @contextlib.contextmanager
    def _translated(self):
        try:
            yield
        except exc.OperationalError as error:
            self.unavailable_count += 1
            raise StoreUnavailable(_describe(error)) from error
        except exc.DBAPIError as error:
            if error.connection_invalidated:
                self.unavailable_count += 1
                raise StoreUnavailable("the database connection was lost") from error
            raise

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig()
        config.set_main_option("script_location", migrations_dir())
        config.attributes["engine"] = self.engine
        command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def upsert(conn: Connection, table, keys: tuple, **values) -> None:
    """Insert a row of ``table``, or update the one with the same ``keys`` columns, in one
    statement (INSERT ... ON CONFLICT DO UPDATE, which SQLite and PostgreSQL both speak), so two
    writers of one row never race into a duplicate key."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    statement = dialect.insert(table).values(**values)
    conn.execute(statement.on_conflict_do_update(
        index_elements=list(keys), set_={key: value for key, value in values.items() if key not in keys}))


def _describe(error: exc.OperationalError) -> str:
    text = str(getattr(error, "orig", error)).lower()
    for needle, meaning in (("locked", "the database is locked by another process"),
                            ("busy", "the database is busy"),
                            ("full", "the disk holding the database is full"),
                            ("readonly", "the database is read-only"),
                            ("read-only", "the database is read-only"),
                            ("unable to open", "the database file cannot be opened"),
                            ("disk i/o", "the database had a disk I/O error")):
        if needle in text:
            return meaning
    return "the database is unavailable"


# --- SQLite only -----------------------------------------------------------------------------
def _prepare_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL for concurrent readers and crash safety; synchronous=NORMAL is durable across a
    process crash (kill -9) in WAL mode. pysqlite's own transaction handling is switched off so
    that a write transaction starts with BEGIN IMMEDIATE: it takes the write lock up front, so
    a guarded UPDATE never has to upgrade a read lock (the classic SQLite deadlock)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        read_only = connection.get_execution_options().get("vmpooler_read")
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
