"""Schema upgrades: all or nothing, a copy first, and never onto a database newer than the code.

``Database.upgrade`` runs here (at ``vmpooler serve`` and ``vmpooler db upgrade``):

- a database whose revision this code does not know (written by a newer vmpooler) is refused
  with ``SchemaTooNew`` before anything is touched;
- an SQLite database behind the newest revision is first copied (db/backup.py, the online backup)
  to ``<file>.<from>-to-<to>.<UTC time>.bak`` beside it, whose path the report carries;
- every migration then runs in ONE transaction (migrations/env.py): SQLite's DDL is transactional
  on one connection, PostgreSQL's too, so a failure anywhere rolls all of them back and the
  database stays at the revision it had, every row as it was (``UpgradeFailed`` says so).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Optional

from sqlalchemy import inspect, text

from vmpooler.db import backup as sqlite_backup


class SchemaTooNew(Exception):
    """The database was upgraded by a newer vmpooler: this one refuses to touch it."""


class UpgradeFailed(Exception):
    """A migration failed; everything was rolled back."""


@dataclasses.dataclass(frozen=True)
class UpgradeReport:
    before: Optional[str]  #: the revision found (None: an empty database)
    after: str  #: the revision now
    backup: Optional[str] = None  #: the copy taken before upgrading (SQLite)


PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def migrations_dir() -> str:
    """Alembic's scripts: installed inside the package as ``vmpooler/_migrations`` (setup.py maps
    the top-level migrations/ there), or the repository's migrations/ in a checkout."""
    installed = os.path.join(PACKAGE, "_migrations")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(PACKAGE), "migrations")


def scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(migrations_dir())


def current_revision(db) -> Optional[str]:
    """The revision the database is at; None when it has no schema yet."""
    with db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(db) -> UpgradeReport:
    """Bring the schema to the newest revision (nothing to do when it is there already)."""
    from alembic import command
    from alembic.config import Config

    directory = scripts()
    head = directory.get_current_head()
    before = current_revision(db)
    known = {script.revision for script in directory.walk_revisions()}
    if before is not None and before not in known:
        raise SchemaTooNew(f"the database's schema is at revision {before}, newer than this vmpooler knows "
                           f"(its newest is {head}): run the vmpooler that upgraded it, or restore a backup")
    if before == head:
        return UpgradeReport(before, head)
    copy = _backup(db, before, head)
    config = Config()
    config.set_main_option("script_location", directory.dir)
    config.attributes["engine"] = db.engine
    try:
        command.upgrade(config, "head")
    except Exception as error:  # every migration ran in one transaction: all of it is undone
        kept = f"; a copy from before is at {copy}" if copy else ""
        raise UpgradeFailed(f"the schema upgrade from {before or 'an empty database'} to {head} failed and was "
                            f"rolled back, the database is as it was{kept}: {_one_line(error)}") from error
    return UpgradeReport(before, head, copy)


def _backup(db, before: Optional[str], head: str) -> Optional[str]:
    """Copy an SQLite database that has a schema to upgrade; None otherwise (PostgreSQL: pg_dump
    is the operator's tool, and its upgrade is transactional all the same)."""
    if not db.is_sqlite or before is None:
        return None
    path = sqlite_backup.sqlite_path(db.url)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = f"{path}.{before}-to-{head}.{stamp}.bak"
    try:
        sqlite_backup.backup(db.url, target)
    except sqlite_backup.BackupError as error:
        raise UpgradeFailed(f"the database was not upgraded from {before} to {head}: its copy could not be "
                            f"taken first ({error})") from None
    return os.path.abspath(target)


def _one_line(error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__
