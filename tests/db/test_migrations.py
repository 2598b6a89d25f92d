"""The Alembic history builds exactly the schema the models describe, and upgrades are idempotent."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from vmpooler.db.database import migrations_dir
from vmpooler.db.models import metadata


def test_migrations_match_the_models(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_upgrade_twice_is_harmless_and_sqlite_runs_in_wal(db):
    db.upgrade()
    with db.engine.connect() as conn:
        if db.is_sqlite:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        head = ScriptDirectory(migrations_dir()).get_current_head()
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    assert {"vms", "vm_events", "tokens", "vm_tags", "durations", "tasks", "pools"} <= set(
        inspect(db.engine).get_table_names())


def test_upgrade_to_0003_rolls_existing_samples_up_by_day(tmp_path):
    from alembic import command
    from alembic.config import Config

    from vmpooler.db.database import Database, migrations_dir

    database = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", migrations_dir())
    config.attributes["engine"] = database.engine
    command.upgrade(config, "0002")
    with database.write() as conn:
        for seconds, day in [(1.0, "2026-01-01"), (3.0, "2026-01-01"), (5.0, "2026-01-02")]:
            conn.execute(text("INSERT INTO durations (kind, pool, vm_name, seconds, at, day) "
                              "VALUES ('clone', 'p', 'vm', :s, '2026-01-01 00:00:00', :d)"), {"s": seconds, "d": day})
    database.upgrade()
    with database.read() as conn:
        rows = [tuple(r) for r in conn.execute(text(
            "SELECT day, count, total, low, high FROM duration_days ORDER BY day"))]
    assert rows == [("2026-01-01", 2, 4.0, 1.0, 3.0), ("2026-01-02", 1, 5.0, 5.0, 5.0)]
    database.dispose()


def test_processes_upgrading_an_empty_database_at_once_all_succeed(db):
    """Several services started together on one empty PostgreSQL database: one migrates, the
    others wait for it and find the schema current (an advisory lock in migrations/env.py)."""
    import os
    import subprocess
    import sys

    if db.is_sqlite:
        return  # one process owns an SQLite file
    with db.engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root, "DATABASE_URL": db.url}
    env.pop("VMPOOLER_CONFIG", None)
    env.pop("VMPOOLER_CONFIG_FILE", None)
    starts = [subprocess.Popen([sys.executable, "-m", "vmpooler", "db", "upgrade"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    results = [process.communicate(timeout=120) + (process.returncode,) for process in starts]
    assert [code for _out, _err, code in results] == [0] * 4, results
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
