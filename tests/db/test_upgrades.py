"""Upgrades of populated databases (issue 18 item 2): from every earlier schema revision to the
newest, on SQLite and PostgreSQL, every row is kept; an upgrade that fails leaves the database
exactly as it was; a database newer than the code is refused.

Table-driven: ``POPULATE`` holds, per revision, what the code of that revision would have
written into the tables that revision added (or whose columns it changed). A database at revision
N is built by migrating an empty one to N and running the populate functions of every revision up
to N. A new migration adds its row (and its revision gets tested from then on by itself).
"""
import datetime
import os
import subprocess
import sys

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import column, insert, inspect, select, table, text

from tests.conftest import make_config
from tests.reliability.harness import ServerProcess
from vmpooler.db import models
from vmpooler.db import checkout as checkout_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import Database, migrations_dir, utcnow
from vmpooler.db.schema import SchemaTooNew, UpgradeFailed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T0 = datetime.datetime(2026, 11, 20, 8, 30, 0)


def at(minutes: int) -> datetime.datetime:
    return T0 + datetime.timedelta(minutes=minutes)


class Written:
    """The rows a populate function wrote, to be found unchanged after the upgrade."""

    def __init__(self, conn):
        self.conn = conn
        self.rows = []  # (table name, key columns, values)

    def add(self, table_name: str, keys=("id",), **values):
        """Insert ``values`` into table ``table_name`` with only these columns (the revision's schema
        may lack later ones); an ``id`` the database gives is returned and remembered."""
        head = models.metadata.tables[table_name]
        written = table(table_name, *(column(key_column, head.c[key_column].type) for key_column in {*values, *keys}))
        statement = insert(written).values(**values)
        if "id" in keys and "id" not in values:
            values = {**values, "id": self.conn.execute(statement.returning(written.c.id)).scalar_one()}
        else:
            self.conn.execute(statement)
        self.rows.append((table_name, keys, values))
        return values.get("id")


def _vm(written, name, state, minutes, **values):
    """A VM row as the clone, boot, checkout and destroy code wrote it, and its event."""
    live = state in ("pending", "ready", "running", "completed")
    row = {"name": name, "live_name": name if live else None, "pool": "debian", "provider": "dummy",
           "template": "tmpl/debian", "state": state, "state_changed_at": at(minutes), "created_at": at(0),
           "clone_attempts": 0, "destroy_attempts": 0}
    vm_id = written.add("vms", **{**row, **values})
    written.add("vm_events", vm_id=vm_id, vm_name=name, pool="debian", at=at(minutes), from_state="pending",
                to_state=state, reason=f"test: {state}")
    return vm_id


def populate_0001(written):
    """The first schema: VMs in every state, a running VM tagged and holding a task, tokens,
    duration samples, the pools mirror."""
    written.add("pools", keys=("name",), name="debian", provider="dummy", template="tmpl/debian", size=2,
                last_boot_at=at(3), updated_at=at(0))
    written.add("tokens", token_hash="a" * 64, prefix="aaaaaaaa", user="jdoe", created_at=at(0), last_used_at=at(5))
    _vm(written, "pending-vm", "pending", 1, next_attempt_at=at(2), last_error="clone failed once",
        clone_attempts=1)
    _vm(written, "ready-vm", "ready", 3, cloned_at=at(2), ready_at=at(3), checked_at=at(4), ip="192.0.2.10")
    running = _vm(written, "running-vm", "running", 5, cloned_at=at(2), ready_at=at(3), checkout_at=at(5),
                  expires_at=at(5 + 24 * 60), lifetime=24.0, token_hash="a" * 64, token_user="jdoe")
    _vm(written, "completed-vm", "completed", 6, cloned_at=at(2), completed_at=at(6), destroy_attempts=1)
    _vm(written, "destroyed-vm", "destroyed", 7, completed_at=at(6), destroyed_at=at(7))
    _vm(written, "failed-vm", "failed", 8, completed_at=at(6), last_error="destroy gave up", destroy_attempts=5)
    _vm(written, "gone-vm", "gone", 9, cloned_at=at(2))
    written.add("vm_tags", vm_id=running, name="project", value="upgrade-test", tagged_at=at(5), day="2026-11-20")
    written.add("tasks", vm_id=running, kind="snapshot", arg="snap1", state="queued", attempts=0, created_at=at(5))
    for kind, seconds in (("clone", 2.5), ("boot", 4.0)):
        written.add("durations", kind=kind, pool="debian", vm_name="ready-vm", seconds=seconds, at=at(3),
                    day="2026-11-20")


def populate_0003(written):
    """Daily duration totals."""
    written.add("duration_days", keys=("kind", "day", "pool"), kind="clone", day="2026-11-19", pool="debian",
                count=3, total=7.5, low=1.5, high=4.0)


def populate_0004(written):
    """The manager's lease."""
    written.add("leases", keys=("name",), name="manager", holder="vm:1:abc", epoch=3, expires_at=at(10),
                renewed_at=at(9))


def populate_0005(written):
    """An on-demand request with a VM cloned for it."""
    request = written.add("ondemand_requests", request_id="req-1", state="pending", created_at=at(1),
                          state_changed_at=at(1), token_hash="a" * 64, token_user="jdoe")
    want = written.add("ondemand_wants", request_ref=request, requested="debian", pool="debian", count=1)
    _vm(written, "ondemand-vm", "ready", 4, cloned_at=at(2), ready_at=at(4), want_id=want)


def populate_0006(written):
    """Run-time pool configuration."""
    written.add("pool_overrides", keys=("pool", "setting"), pool="debian", setting="size", value="3", user="admin",
                changed_at=at(11))
    written.add("pool_drains", keys=("pool",), pool="debian", reason="template changed", requested_at=at(11))
    written.add("pool_events", pool="debian", at=at(11), action="size", before="2", after="3", user="admin",
                address="192.0.2.1")


def populate_0007(written):
    """A process's heartbeat (the health check's write)."""
    written.add("heartbeats", keys=("process",), process="vm:1:abc", beat_at=at(12))


def populate_0008(written):
    """The answer an Idempotency-Key got (a checkout), kept for retries."""
    written.add("idempotency_keys", scope="", key="retry-1", fingerprint="b" * 64, status=200,
                answer='{"ok": true}', created_at=at(13), expires_at=at(13 + 24 * 60))


def populate_0009(written):
    """A dead letter: a clone given up."""
    written.add("dead_letters", vm_id=1, vm_name="pending-vm", pool="debian", queue_from="clone",
                error_class="TransientError", error_message="boom", retry_count=3, failed_at=at(14))


#: (revision, what the code of that revision wrote into what it added): a new migration adds a row
POPULATE = [("0001", populate_0001), ("0002", None), ("0003", populate_0003), ("0004", populate_0004),
            ("0005", populate_0005), ("0006", populate_0006), ("0007", populate_0007), ("0008", populate_0008),
            ("0009", populate_0009)]


def head() -> str:
    return ScriptDirectory(migrations_dir()).get_current_head()


def test_every_revision_has_a_row():
    scripts = ScriptDirectory(migrations_dir())
    revisions = [revision.revision for revision in scripts.walk_revisions()]
    assert sorted(revisions) == [revision for revision, _ in POPULATE]


def _alembic(database) -> Config:
    config = Config()
    config.set_main_option("script_location", migrations_dir())
    config.attributes["engine"] = database.engine
    return config


@pytest.fixture
def empty(db):
    """The test's database (SQLite file or PostgreSQL) with nothing in it, not even a schema."""
    with db.engine.begin() as conn:
        models.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    return db


def populated(database, revision: str) -> list:
    """Migrate the empty ``database`` to ``revision`` and write what the code up to it wrote."""
    command.upgrade(_alembic(database), revision)
    with database.engine.begin() as conn:
        written = Written(conn)
        for number, populate in POPULATE:
            if populate is not None:
                populate(written)
            if number == revision:
                break
    return written.rows


def _version(database) -> str:
    with database.engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def assert_kept(database, rows: list) -> None:
    with database.read() as conn:
        for name, key, values in rows:
            head_table = models.metadata.tables[name]
            columns = [head_table.c[k] for k in values]  # those of the revision it was written at
            found = conn.execute(select(*columns).where(*(head_table.c[k] == values[k] for k in key))).one()
            assert dict(found._mapping) == values, name


@pytest.mark.parametrize("revision", [revision for revision, _ in POPULATE[:-1]] + [POPULATE[-1][0]])
def test_a_populated_database_upgrades_from_every_revision_keeping_every_row(empty, revision):
    rows = populated(empty, revision)
    report = empty.upgrade()
    assert _version(empty) == head()
    assert (report.before, report.after) == (revision, head())
    assert_kept(empty, rows)
    if empty.is_sqlite and revision != head():
        assert report.backup and os.path.exists(report.backup)
    # the service works on it: a clone recorded, the ready VM checked out
    pool = make_config(pools=[{"name": "debian", "template": "tmpl/debian", "size": 2}]).pools[0]
    assert vm_store.new_vms(empty, [(pool, "after-upgrade")], utcnow())
    taken = checkout_store.checkout(empty, [checkout_store.Want("debian", ("debian",), 1)], utcnow(), 24)
    assert [vm.name for vm in taken["debian"]] == ["ready-vm"]


def _tables(database) -> set:
    return set(inspect(database.engine).get_table_names())


def test_a_failing_upgrade_leaves_the_database_as_it_was(empty):
    """From 0003, where the 0006 migration meets a table of its name already there (a real error
    of the database, late in the upgrade): nothing of 0004 or 0005 stays, the version is 0003,
    every row is kept."""
    rows = populated(empty, "0003")
    with empty.engine.begin() as conn:
        conn.execute(text("CREATE TABLE pool_drains (pool VARCHAR(100) PRIMARY KEY)"))
    tables = _tables(empty)
    with pytest.raises(UpgradeFailed) as failed:
        empty.upgrade()
    assert "0003" in str(failed.value) and "\n" not in str(failed.value)
    assert _version(empty) == "0003"
    assert _tables(empty) == tables  # no leases, no on-demand tables
    assert_kept(empty, rows)
    with empty.engine.connect() as conn:
        assert "want_id" not in {c["name"] for c in inspect(conn).get_columns("vms")}


def test_a_database_newer_than_the_code_is_refused(empty):
    empty.upgrade()
    with empty.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(SchemaTooNew) as refused:
        empty.upgrade()
    message = str(refused.value)
    assert "0999" in message and head() in message and "\n" not in message
    assert _version(empty) == "0999"


def _cli(*args, url):
    env = {**os.environ, "PYTHONPATH": ROOT, "DATABASE_URL": url}
    env.pop("VMPOOLER_CONFIG", None)
    env.pop("VMPOOLER_CONFIG_FILE", None)
    return subprocess.run([sys.executable, "-m", "vmpooler", *args], env=env, text=True, capture_output=True,
                          timeout=120)


def test_db_upgrade_of_a_0003_database_with_a_running_tagged_vm(tmp_path):
    """The reported failure: schema 0003, a running tagged VM; `vmpooler db upgrade` stopped at
    0004 -> 0005 with FOREIGN KEY constraint failed and left the database at 0004."""
    database = Database(f"sqlite:///{tmp_path / 'old.db'}")
    rows = populated(database, "0003")
    database.dispose()
    done = _cli("db", "upgrade", url=database.url)
    assert done.returncode == 0, done.stderr
    backup = [line for line in done.stdout.splitlines() if "backed up before the upgrade to" in line]
    assert backup and os.path.exists(backup[0].rsplit(" ", 1)[-1]), done.stdout
    assert "upgraded from 0003 to" in done.stdout
    database = Database(database.url)
    assert _version(database) == head()
    assert_kept(database, rows)
    with database.engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    database.dispose()


def test_serve_upgrades_an_old_database_and_names_its_backup(tmp_path):
    server = ServerProcess(tmp_path, [{"name": "debian", "template": "tmpl/debian", "size": 2}])
    database = Database(server.database_url)
    rows = populated(database, "0002")
    database.dispose()
    server.start()
    try:
        assert server.client.get("/api/v1/vm/running-vm").json()["running-vm"]["tags"] == {"project": "upgrade-test"}
    finally:
        server.stop()
    backed_up = [line for line in server.log().splitlines() if "backed up before the schema upgrade to" in line]
    assert backed_up and os.path.exists(backed_up[0].rsplit(" ", 1)[-1])
    database = Database(server.database_url)
    # the service has changed these since (VMs moved on, pools mirrored, a day-old heartbeat removed,
    # the queued task run: its VM is not in the dummy provider, so it may have failed by now)
    assert_kept(database, [row for row in rows if row[0] not in ("vms", "pools", "heartbeats", "tasks")])
    database.dispose()


def test_serve_and_db_upgrade_refuse_a_newer_database_in_one_line(tmp_path):
    server = ServerProcess(tmp_path, [{"name": "debian", "template": "tmpl/debian", "size": 1}])
    database = Database(server.database_url)
    database.upgrade()
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    database.dispose()
    refused = _cli("db", "upgrade", url=server.database_url)
    served = _cli("serve", "--config", str(server.config_path), "--port", str(server.port), url=server.database_url)
    for answer in (refused, served):
        assert answer.returncode == 1
        assert len(answer.stderr.strip().splitlines()) == 1 and "0999" in answer.stderr, answer.stderr
