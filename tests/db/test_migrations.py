"""The Alembic history builds exactly the schema the models describe, and upgrades are idempotent."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from vmpooler.db.models import metadata


def test_migrations_match_the_models(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_twice_is_harmless_and_sqlite_runs_in_wal(db):
    db.upgrade()
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    assert {"vms", "vm_events", "tokens", "vm_tags", "durations", "tasks", "pools"} <= set(
        inspect(db.engine).get_table_names())
