"""SQLite only: how every connection to an SQLite file is opened and how its transactions
begin (WAL, synchronous=NORMAL, foreign keys, BEGIN IMMEDIATE for writes, the busy timeout), and
what is done with a connection SQLite could open only read-only. The one SQLite-specific module
beside the online backup (db/backup.py); Database (db/database.py) calls ``prepare_sqlite``.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from typing import Optional

from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger("vmpooler.db.database")  # the name these lines always had


def prepare_sqlite(engine: Engine, busy_timeout_ms: int, waits) -> None:
    """WAL for concurrent readers and crash safety; synchronous=NORMAL is durable across a
    process crash (kill -9) in WAL mode. pysqlite's own transaction handling is switched off so
    that a write transaction starts with BEGIN IMMEDIATE: it takes the write lock up front, so
    a guarded UPDATE never has to upgrade a read lock (the classic SQLite deadlock). A write
    begun while ``waits()`` is false runs with busy timeout 0 (Database.not_waiting); the
    connection keeps the timeout it last had, so the common case sets nothing."""

    opened_read_only = [False]  # the last connection's; logged when it changes, not per connection

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 0")
        read_only = _opened_read_only(cursor)
        if read_only:
            record.info[_OPENED_READ_ONLY] = True
        if read_only != opened_read_only[0]:
            opened_read_only[0] = read_only
            if read_only:
                log.warning("the database %s opens only read-only: writes are refused, and each such "
                            "connection is closed after one use", engine.url.database)
            else:
                log.warning("the database %s opens for writing again", engine.url.database)
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        record.info[_BUSY_TIMEOUT] = busy_timeout_ms
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection, record):
        # SQLite opens the file read-only when it cannot open it for writing (a read-only file or
        # mount, an immutable file) and the connection stays read-only whatever the file becomes:
        # such a connection serves the read that needed it, then is closed, never pooled
        if dbapi_connection is not None and record.info.pop(_OPENED_READ_ONLY, False):
            record.invalidate()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        read_only = connection.get_execution_options().get("vmpooler_read")
        if not read_only:
            wanted = busy_timeout_ms if waits() else 0
            pooled = connection.connection
            if pooled.info.get(_BUSY_TIMEOUT) != wanted:
                pooled.dbapi_connection.execute(f"PRAGMA busy_timeout = {int(wanted)}")
                pooled.info[_BUSY_TIMEOUT] = wanted
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


_OPENED_READ_ONLY, _BUSY_TIMEOUT = "vmpooler_opened_read_only", "vmpooler_busy_timeout_ms"


def _opened_read_only(cursor) -> bool:
    """Whether SQLite fell back to opening the file read-only: a write to the header (the same
    user_version, rolled back) is refused as read-only. A lock held by another process answers
    "locked" at once (busy_timeout is 0 here): the connection is then taken as writable."""
    try:
        version = cursor.execute("PRAGMA user_version").fetchone()[0]
        cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            cursor.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        return "readonly" in str(error).lower()
    return False


def why_cannot_open(path) -> Optional[str]:
    """SQLite says only "unable to open database file"; the file's directory may tell why (None
    when it does not)."""
    directory = os.path.dirname(os.path.abspath(path or "."))
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "the database's file system is mounted read-only"
    except FileNotFoundError:
        return "the database's directory does not exist"
    except OSError:
        pass
    return None
