"""Alembic environment: runs migrations on the engine the service hands over, or on
DATABASE_URL / sqlalchemy.url when alembic is run from the command line."""
import os

from alembic import context
from sqlalchemy import create_engine, text

from vmpooler.db.models import metadata

config = context.config
#: the PostgreSQL advisory lock key that serialises migrations ("vmpl" in ASCII)
MIGRATION_LOCK = 0x766D706C


def run_migrations_online():
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        # render_as_batch: SQLite can only ALTER a table by copying it; batch mode does that.
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # processes started together on an empty database: one migrates, the others wait for
                # it here and then find nothing left to do (held until this transaction ends)
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()
        connection.commit()


run_migrations_online()
