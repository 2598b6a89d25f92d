"""vmpooler db copy: every table into an empty database, counts checked, nothing overwritten."""
import datetime
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, insert, select

from vmpooler.db.copy import CopyRefused, copy_database
from vmpooler.db.database import Database, utcnow
from vmpooler.db.models import durations, metadata, tasks, tokens, vm_events, vm_tags, vms
from tests.conftest import add_vm, make_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def source(tmp_path):
    """An SQLite database holding rows in every table, as a service leaves it."""
    database = Database(f"sqlite:///{tmp_path / 'source.db'}")
    database.upgrade()
    pool = make_config().pools[0]
    from vmpooler.db.stats import sync_pools
    sync_pools(database, make_config().pools, utcnow())
    names = [add_vm(database, pool, state) for state in ("pending", "ready", "running", "running")]
    now = utcnow()
    with database.write() as conn:
        running = conn.execute(select(vms.c.id).where(vms.c.name == names[2])).scalar_one()
        conn.execute(insert(tokens).values(token_hash="a" * 64, prefix="abcdefgh", user="jdoe", created_at=now))
        conn.execute(insert(vm_tags).values(vm_id=running, name="job", value="ci-1", tagged_at=now, day="2026-12-01"))
        conn.execute(insert(durations), [{"kind": "clone", "pool": pool.name, "vm_name": n, "seconds": 1.5 + i,
                                          "at": now, "day": "2026-12-01"} for i, n in enumerate(names)])
        conn.execute(insert(tasks).values(vm_id=running, kind="snapshot", arg="snap1", state="done", attempts=1,
                                          created_at=now, finished_at=now + datetime.timedelta(seconds=3)))
    yield database
    database.dispose()


def rows(db, table):
    with db.read() as conn:
        return [tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))]


def test_every_table_is_copied_row_for_row(source, db):
    copied = {entry.table: entry.rows for entry in copy_database(source, db)}
    assert set(copied) == {table.name for table in metadata.sorted_tables}
    assert copied["vms"] == 4 and copied["vm_events"] >= 4 and copied["tokens"] == 1 and copied["duration_days"]
    for table in metadata.sorted_tables:
        assert rows(db, table) == rows(source, table), table.name


def test_the_target_goes_on_where_the_source_stopped(source, db):
    copy_database(source, db)
    before = max(row[0] for row in rows(db, vms))
    name = add_vm(db, make_config().pools[0], "ready")  # ids continue: no collision with copied rows
    with db.read() as conn:
        vm_id = conn.execute(select(vms.c.id).where(vms.c.name == name)).scalar_one()
        events = conn.execute(select(func.count()).select_from(vm_events).where(vm_events.c.vm_id == vm_id))
        assert events.scalar_one() >= 2
    assert vm_id > before


def test_a_target_holding_data_is_refused_and_left_alone(source, db):
    copy_database(source, db)
    before = {table.name: rows(db, table) for table in metadata.sorted_tables}
    with pytest.raises(CopyRefused, match="already holds data"):
        copy_database(source, db)
    assert {table.name: rows(db, table) for table in metadata.sorted_tables} == before


def test_the_same_database_is_refused(source):
    with pytest.raises(CopyRefused, match="same database"):
        copy_database(source, source)


def test_a_source_behind_the_schema_is_refused(tmp_path, db):
    stale = Database(f"sqlite:///{tmp_path / 'never-upgraded.db'}")
    with pytest.raises(CopyRefused, match="db upgrade"):
        copy_database(stale, db)
    stale.dispose()


def vmpooler(*args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "vmpooler", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_command_copies_once_and_then_refuses(source, tmp_path):
    config = tmp_path / "vmpooler.yaml"
    config.write_text(f":database:\n  url: {source.url}\n:providers:\n  :dummy: {{}}\n"
                      ":pools:\n  - name: debian-7-i386\n    template: debian-7-i386\n    size: 1\n")
    target = f"sqlite:///{tmp_path / 'target.db'}"
    first = vmpooler("db", "copy", "--config", str(config), "--to", target)
    assert first.returncode == 0, first.stderr
    assert "vms: 4 rows" in first.stdout and "matches" in first.stdout
    second = vmpooler("db", "copy", "--config", str(config), "--to", target)
    assert second.returncode == 1 and "already holds data" in second.stderr
    bad = vmpooler("db", "copy", "--config", str(config), "--to", "not a url")
    assert bad.returncode == 2 and "SQLAlchemy URL" in bad.stderr and "Traceback" not in bad.stderr
