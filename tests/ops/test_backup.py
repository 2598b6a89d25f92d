"""vmpooler db backup: a copy taken while writes go on is a consistent, openable database holding
every write acknowledged before the backup started; PostgreSQL is pointed to pg_dump."""
import os
import sqlite3
import stat
import threading
import time

from sqlalchemy import insert

from tests.conftest import make_config, new_vm
from tests.test_cli import vmpooler
from vmpooler.db import vms as vm_store
from vmpooler.db.database import Database, utcnow
from vmpooler.db.models import vm_events

ROUNDS = 3
MAX_WRITES = 20000  # the writer's bound, whatever the machine's speed


class Writer(threading.Thread):
    """Records new VMs (a vms row and its event, one transaction each) as the manager does;
    ``acknowledged`` lists the names whose transaction committed."""

    def __init__(self, db, pool):
        super().__init__(daemon=True)
        self.db, self.pool = db, pool
        self.acknowledged, self.stop = [], threading.Event()

    def run(self):
        while not self.stop.is_set() and len(self.acknowledged) < MAX_WRITES:
            name = f"b{len(self.acknowledged):05d}"
            new_vm(self.db, self.pool, name, utcnow())
            self.acknowledged.append(name)


def seed_bulk(db, rows=2000):
    """Some megabytes of history, so the copy takes a while."""
    now = utcnow()
    with db.write() as conn:
        conn.execute(insert(vm_events), [{"vm_id": 0, "vm_name": "old", "pool": "p", "at": now, "from_state": None,
                                          "to_state": "pending", "reason": "x" * 10000} for _ in range(rows)])


def test_a_backup_while_writes_go_on_holds_every_acknowledged_write(tmp_path):
    url = f"sqlite:///{tmp_path / 'vmpooler.db'}"
    db = Database(url)
    db.upgrade()
    seed_bulk(db)
    writer = Writer(db, make_config().pools[0])
    writer.start()
    try:
        for round_ in range(ROUNDS):
            while len(writer.acknowledged) < 50 * (round_ + 1):
                time.sleep(0.01)
            before = list(writer.acknowledged)
            target = tmp_path / f"backup-{round_}.db"
            result = vmpooler("db", "backup", str(target), env={"DATABASE_URL": url})
            assert result.returncode == 0, result.stderr
            assert len(writer.acknowledged) > len(before)  # the writes went on meanwhile
            check_copy(target, before)
    finally:
        writer.stop.set()
        writer.join(30)
        db.dispose()


def check_copy(path, acknowledged):
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one self-contained file
        names = {name for (name,) in raw.execute("SELECT name FROM vms")}
        # consistent: each VM with exactly the event of its own transaction, nothing torn
        unmatched = raw.execute("SELECT count(*) FROM vms WHERE (SELECT count(*) FROM vm_events e "
                                "WHERE e.vm_id = vms.id AND e.reason = 'clone requested') != 1").fetchone()[0]
        orphans = raw.execute("SELECT count(*) FROM vm_events e WHERE e.vm_name != 'old' AND NOT EXISTS "
                              "(SELECT 1 FROM vms WHERE vms.id = e.vm_id)").fetchone()[0]
    assert set(acknowledged) <= names
    assert unmatched == 0 and orphans == 0
    copy = Database(f"sqlite:///{path}")  # opens as a database of ours, schema and all
    try:
        assert vm_store.latest(copy, acknowledged[-1]).state == "pending"
    finally:
        copy.dispose()


def test_a_backup_replaces_the_file_and_refuses_what_it_cannot_copy(tmp_path):
    url = f"sqlite:///{tmp_path / 'vmpooler.db'}"
    missing = vmpooler("db", "backup", str(tmp_path / "copy.db"), env={"DATABASE_URL": url})
    assert missing.returncode == 1 and "no such database file" in missing.stderr
    assert not (tmp_path / "vmpooler.db").exists()  # not created by asking
    Database(url).upgrade()
    (tmp_path / "copy.db").write_text("an older backup")
    assert vmpooler("db", "backup", str(tmp_path / "copy.db"), env={"DATABASE_URL": url}).returncode == 0
    with sqlite3.connect(tmp_path / "copy.db") as raw:
        assert raw.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    assert not list(tmp_path.glob("*.partial"))
    itself = vmpooler("db", "backup", str(tmp_path / "vmpooler.db"), env={"DATABASE_URL": url})
    assert itself.returncode == 1 and "must not be the database itself" in itself.stderr


def test_a_backup_is_private_and_a_missing_directory_is_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'vmpooler.db'}"
    Database(url).upgrade()
    # under the usual umask, which leaves new files world-readable
    assert vmpooler("db", "backup", str(tmp_path / "copy.db"), env={"DATABASE_URL": url}, umask=0o022).returncode == 0
    assert stat.S_IMODE(os.stat(tmp_path / "copy.db").st_mode) == 0o600  # it holds the token hashes
    nowhere = tmp_path / "no" / "such" / "dir" / "copy.db"
    result = vmpooler("db", "backup", str(nowhere), env={"DATABASE_URL": url})
    assert result.returncode == 1 and f"{tmp_path / 'no' / 'such' / 'dir'}: no such directory" in result.stderr


def test_postgresql_is_pointed_to_pg_dump(tmp_path):
    result = vmpooler("db", "backup", str(tmp_path / "x.db"),
                      env={"DATABASE_URL": "postgresql://vmpooler@127.0.0.1/vmpooler"})
    assert result.returncode == 1 and "pg_dump" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.db").exists()
