"""Alembic environment: runs migrations on the engine the service hands over, or on
DATABASE_URL / sqlalchemy.url when alembic is run from the command line.

Every pending migration runs in ONE transaction (transactional_ddl, no transaction per
migration): on PostgreSQL and on SQLite alike, DDL is transactional, so an upgrade that fails
anywhere leaves the database exactly at the revision it had (db/schema.py). On SQLite the
connection's foreign-key enforcement is off meanwhile: a migration that rebuilds a table (batch
mode copies it, drops the old one and renames the copy) would otherwise fail on every row that
references it ("FOREIGN KEY constraint failed" as the old table is dropped). SQLite only changes
that setting outside a transaction, and the keys are checked (PRAGMA foreign_key_check) before
the commit instead.
"""
import contextlib
import os

from alembic import context
from sqlalchemy import text

from vmpooler.db.database import Database
from vmpooler.db.models import metadata

config = context.config
#: the PostgreSQL advisory lock key that serialises migrations ("vmpl" in ASCII)
MIGRATION_LOCK = 0x766D706C


@contextlib.contextmanager
def foreign_keys_off(connection):
    """SQLite: foreign keys unenforced on this connection until the block ends (set on the
    driver's connection, outside any transaction, where SQLite honours it)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.dbapi_connection
    driver.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys = ON")


def check_foreign_keys(connection) -> None:
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"the upgrade would leave rows whose foreign keys point nowhere: {broken[:5]}")


def run_migrations_online():
    engine = config.attributes.get("engine")
    if engine is None:  # the service's engine all the same: on SQLite its transactions begin for real
        engine = Database(os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")).engine
    with engine.connect() as connection, foreign_keys_off(connection):
        # render_as_batch: SQLite can only ALTER a table by copying it; batch mode does that.
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                          transactional_ddl=True, transaction_per_migration=False)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # processes started together on an empty database: one migrates, the others wait for
                # it here and then find nothing left to do (held until this transaction ends)
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()
            check_foreign_keys(connection)
        connection.commit()


run_migrations_online()
