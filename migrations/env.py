"""Alembic environment: runs migrations on the engine the service hands over, or on
DATABASE_URL / sqlalchemy.url when alembic is run from the command line."""
import os

from alembic import context
from sqlalchemy import create_engine

from vmpooler.db.models import metadata

config = context.config


def run_migrations_online():
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        # render_as_batch: SQLite can only ALTER a table by copying it; batch mode does that.
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
