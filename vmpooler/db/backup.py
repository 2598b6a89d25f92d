"""``vmpooler db backup FILE``: a consistent copy of the SQLite database while the service runs.

SQLite's online backup API copies the database as one read transaction: in WAL mode writers go on
meanwhile, and the copy holds exactly what was committed when it began (every write the service
had acknowledged by then). The copy is written next to FILE, checked, switched out of WAL mode
(one self-contained file) and renamed onto FILE, so FILE is never half-written. FILE is readable
by its owner only (0600): it holds the token hashes. PostgreSQL has its own tool, pg_dump.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
from typing import Optional

from sqlalchemy.engine import make_url


class BackupError(Exception):
    """The backup cannot be made; the message says why and what to do."""


def sqlite_path(url: str) -> str:
    """The file of an SQLite URL; BackupError for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise BackupError(f"the database is {parsed.get_backend_name()}, not SQLite: back it up with its own "
                          f"tool, e.g. pg_dump --format=custom --file=FILE '<database url>'")
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory database has nothing to back up")
    return parsed.database


def missing_file(url: str) -> Optional[str]:
    """Why an SQLite URL names no database yet (opening it would create an empty one), or None."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not os.path.exists(parsed.database):
        return f"{parsed.database}: no such database file"
    return None


def backup(url: str, target: str) -> int:
    """Copy the database at ``url`` to ``target`` (replaced if it exists); the number of pages copied."""
    source_path = sqlite_path(url)
    if missing_file(url):
        raise BackupError(missing_file(url))
    if os.path.abspath(target) == os.path.abspath(source_path):
        raise BackupError("the backup file must not be the database itself")
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise BackupError(f"{directory}: no such directory (for the backup file {target})")
    partial = f"{target}.partial"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(partial)
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # never readable by others
        pages = _copy(source_path, partial)
        os.replace(partial, target)
    except (sqlite3.Error, OSError, BackupError) as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise BackupError(f"backup to {target} failed: {error}") from None
    return pages


def _copy(source_path: str, partial: str) -> int:
    # Read-only: the backup never writes to the live database (nor creates one by mistake).
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    try:
        destination = sqlite3.connect(partial)
        try:
            source.backup(destination)  # all pages in one step: one consistent snapshot
            destination.execute("PRAGMA journal_mode=DELETE")
            problems = destination.execute("PRAGMA integrity_check").fetchall()
            if problems != [("ok",)]:
                raise BackupError(f"the copy failed its integrity check: {problems[:5]}")
            return destination.execute("PRAGMA page_count").fetchone()[0]
        finally:
            destination.close()
    finally:
        source.close()
