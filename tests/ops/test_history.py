"""vmpooler history: a VM's whole life from the audit trail, for a VM that went through every
state (pending, ready, running, completed, destroyed) in the real service."""
import re
from types import SimpleNamespace

from tests.api.conftest import PASSWORD, USERS_AUTH
from tests.conftest import add_vm, make_config
from tests.reliability.harness import service_config, wait_until
from tests.service import InProcessService
from tests.test_cli import vmpooler
from vmpooler.auth.tokens import issue, token_hash
from vmpooler.db import tasks as task_store
from vmpooler.db import tokens as token_rows
from vmpooler.db import checkout as checkout_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.db.audit import vm_history
from vmpooler.model import Retry, TaskKind
from vmpooler.operations import format_life

POOLS = [{"name": "debian-7-i386", "template": "debian-7-i386", "size": 1}]


def live_one_life(tmp_path):
    """Clone, boot, check out with a token, tag, extend, delete, destroy: the VM's name and token."""
    service = InProcessService(service_config(tmp_path, POOLS, auth=USERS_AUTH))
    try:
        wait_until(lambda: service.get("/status").json()["pools"]["debian-7-i386"]["ready"] == 1, 30, "a ready VM")
        token = service.client.post("/api/v1/token", user="jdoe", password=PASSWORD).json()["token"]
        checkout = service.client.post("/api/v1/vm/debian-7-i386", token=token).json()
        name = checkout["debian-7-i386"]["hostname"]
        changed = service.client.put(f"/api/v1/vm/{name}", body={"tags": {"project": "audit"}, "lifetime": 6},
                                     token=token)
        assert changed.status == 200, changed.text
        assert service.client.delete(f"/api/v1/vm/{name}", token=token).status == 200

        wait_until(lambda: vm_store.latest(service.db, name).state == "destroyed", 30, f"{name} destroyed")
    finally:
        service.stop()
    return name, token


def test_history_tells_a_whole_life(tmp_path):
    name, token = live_one_life(tmp_path)
    result = vmpooler("history", name, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'vmpooler.db'}"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"{name} (vm #") and "pool debian-7-i386" in out and "now destroyed" in out
    assert f"by jdoe with token {token[:8]}..." in out and token[8:] not in out  # the prefix only
    assert "lifetime 6h" in out and "tag project=audit" in out
    events = [line for line in out.splitlines() if re.match(r"  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", line)]
    changes = [re.split(r"\s{2,}", line.strip())[1] for line in events]
    for change in ("(new) -> pending", "pending -> ready", "ready -> running", "running -> completed",
                   "completed -> destroyed"):
        assert change in changes, (change, out)
    assert changes.index("(new) -> pending") < changes.index("pending -> ready") < changes.index(
        "ready -> running") < changes.index("running -> completed") < changes.index("completed -> destroyed")
    assert any("checked out by jdoe" in line for line in events)
    assert any("deleted by the client" in line for line in events)
    # the PUT's lifetime and tag change, as the state layer records it
    assert any("running  " in line and "6h" in line and "audit" in line for line in events), out


def test_history_of_an_unknown_vm_or_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'vmpooler.db'}"
    missing = vmpooler("history", "nobody", env={"DATABASE_URL": url})
    assert missing.returncode == 1 and "no such database file" in missing.stderr
    assert vmpooler("db", "upgrade", env={"DATABASE_URL": url}).returncode == 0
    unknown = vmpooler("history", "nobody", env={"DATABASE_URL": url})
    assert unknown.returncode == 1 and "no VM named 'nobody'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_every_vm_that_had_the_name_oldest_first(db):
    """On SQLite and PostgreSQL: a reused name gives one life per VM; a deleted token shows as such."""
    pool = make_config().pools[0]
    token = issue(db, "jdoe", utcnow())
    add_vm(db, pool, "ready", name="twice")
    owner = checkout_store.Owner(token_hash(token), "jdoe")
    checkout_store.checkout(db, [checkout_store.Want(pool.name, (pool.name,), 1)], utcnow(), 12, owner=owner)
    vm_store.complete(db, vm_store.latest(db, "twice"), "deleted by the client", utcnow())
    vm_store.destroyed(db, vm_store.latest(db, "twice"), utcnow())
    token_rows.remove(db, token_rows.by_hash(db, token_hash(token)).id)
    add_vm(db, pool, "pending", name="twice")
    with db.read() as conn:
        lives = vm_history(conn, "twice")
        assert vm_history(conn, "never") == []
    assert [life.vm.state for life in lives] == ["destroyed", "pending"]
    assert [event.to_state for event in lives[0].events][-3:] == ["running", "completed", "destroyed"]
    assert lives[0].token_prefix is None and lives[0].vm.token_user == "jdoe"
    assert "by jdoe with a token deleted since" in format_life(lives[0])
    assert [event.to_state for event in lives[1].events] == ["pending"]


def test_history_shows_snapshots_reverts_and_added_disks(db, tmp_path):
    """On SQLite and PostgreSQL: every task of the VM, with its state, time, attempts and error."""
    pool = make_config().pools[0]
    add_vm(db, pool, "running", name="worked-on")
    vm = vm_store.latest(db, "worked-on")
    now = utcnow()
    snapshot = task_store.queue(db, vm, TaskKind.SNAPSHOT, "before-upgrade", now)
    assert task_store.claim(db, snapshot) and task_store.finish(db, snapshot, now)
    revert = task_store.queue(db, vm, TaskKind.REVERT, "before-upgrade", now)
    assert task_store.claim(db, revert)
    assert task_store.failed(db, SimpleNamespace(id=revert), "no such snapshot", now, Retry(3, None))
    task_store.queue(db, vm, TaskKind.DISK, "8", now)
    with db.read() as conn:
        (life,) = vm_history(conn, "worked-on")
    text = format_life(life)
    assert re.search(r"snapshot 'before-upgrade' queued .* UTC: done .* UTC", text), text
    assert re.search(r"revert 'before-upgrade' queued .*: failed .* \(3 attempts\): no such snapshot", text), text
    assert re.search(r"disk of 8 GB queued .* UTC: queued$", text, re.M), text
