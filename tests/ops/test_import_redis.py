"""``vmpooler db import-redis`` against a real redis-server filled the way the original fills it,
then the service taking over the imported state: ready VMs handed out, running VMs expiring on
time, tokens still valid for their owners."""
import datetime
import shutil
import subprocess
import time

import pytest
import yaml

from tests.api.conftest import USERS_AUTH
from tests.reliability.harness import raw_config, wait_until
from tests.service import InProcessService
from tests.test_cli import free_port, vmpooler
from vmpooler import config as config_module
from vmpooler.auth.tokens import token_hash
from vmpooler.db import vms as vm_store
from vmpooler.db.database import Database
from vmpooler.db.models import dead_letters, ondemand_requests, pool_overrides, tasks, tokens, vm_events, vm_tags, vms
from vmpooler.providers.registry import REGISTRY

redis = pytest.importorskip("redis")

POOLS = [{"name": "debian-7-i386", "template": "debian-7-i386", "size": 2},
         {"name": "centos-7", "template": "centos-7", "size": 1}]
HELD_TOKEN = "abcdefgh1234567890abcdefgh123456"  # jdoe's, holding held-vm
SPARE_TOKEN = "zyxwvuts1234567890zyxwvuts123456"  # other's, holding nothing


def ruby_time(moment: datetime.datetime) -> str:
    """A UTC time as the original stores it (Ruby's Time#to_s)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S +0000")


@pytest.fixture
def redis_server(tmp_path):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (scripts/test.sh installs Debian's redis-server)")
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    try:
        wait_until(client.ping, 10, "redis-server to answer", interval=0.05)
        yield client, f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def fill_like_the_original(client, now: datetime.datetime) -> None:
    """What a 3.x vmpooler leaves in Redis: the writes of its pool manager and API, key by key."""
    for pool in ("debian-7-i386", "centos-7", "retired-pool"):
        client.sadd("vmpooler__pools", pool)

    def vm(name, pool, queue, **fields):
        client.sadd(f"vmpooler__{queue}__{pool}", name)
        fields.setdefault("clone", ruby_time(now - datetime.timedelta(hours=4)))
        client.hset(f"vmpooler__vm__{name}", mapping={"template": pool, "pool": pool, **fields})

    ready_at = ruby_time(now - datetime.timedelta(minutes=40))  # within ready_ttl (60 minutes)
    vm("ready-one", "debian-7-i386", "ready", ready=ready_at, ip="192.0.2.10")
    vm("ready-two", "debian-7-i386", "ready", ready=ruby_time(now - datetime.timedelta(minutes=10)))
    checkout = ruby_time(now - datetime.timedelta(minutes=30))
    vm("held-vm", "debian-7-i386", "running", ready=ready_at, checkout=checkout, lifetime="12",
       **{"token:token": HELD_TOKEN, "token:user": "jdoe", "tag:project": "migration",
          "snapshot:snap1": ruby_time(now - datetime.timedelta(minutes=20)), "disk": "+8gb:+16gb"})
    client.hset("vmpooler__active__debian-7-i386", "held-vm", checkout)
    vm("expired-vm", "centos-7", "running", ready=ready_at,
       checkout=ruby_time(now - datetime.timedelta(hours=3)), lifetime="2")
    vm("done-vm", "centos-7", "completed", destroy=ruby_time(now - datetime.timedelta(minutes=1)))
    vm("booting-vm", "centos-7", "pending", clone=ruby_time(now - datetime.timedelta(minutes=1)))
    vm("retired-vm", "retired-pool", "ready")
    vm("od-vm", "debian-7-i386", "running", ready=ready_at, checkout=checkout, lifetime="12",
       **{"token:token": HELD_TOKEN, "token:user": "jdoe", "request_id": "req-1", "pool_alias": "debian-7-i386"})

    client.hset(f"vmpooler__token__{HELD_TOKEN}", mapping={"user": "jdoe", "created": ruby_time(now - datetime.timedelta(days=9)),
                                                           "last": checkout})
    client.hset(f"vmpooler__token__{SPARE_TOKEN}", mapping={"user": "other", "created": ruby_time(now)})

    client.zadd("vmpooler__provisioning__processing", {"req-1": int(now.timestamp()) - 1800})
    client.hset("vmpooler__odrequest__req-1", mapping={"requested": "debian-7-i386:debian-7-i386:1",
                                                       "status": "ready", "token:token": HELD_TOKEN,
                                                       "token:user": "jdoe"})
    client.sadd("vmpooler__req-1__debian-7-i386__debian-7-i386", "od-vm")

    client.hset("vmpooler__config__poolsize", mapping={"debian-7-i386": "3", "retired-pool": "4"})
    client.hset(f"vmpooler__clone__{(now - datetime.timedelta(days=1)).date()}",
                mapping={"debian-7-i386:ready-one": "12.50", "centos-7:done-vm": "20.00"})
    client.hset(f"vmpooler__boot__{(now - datetime.timedelta(days=1)).date()}", "debian-7-i386:ready-one", "33.10")
    entry = ('{"vm":"gone-vm","pool":"debian-7-i386","queue_from":"clone","error_class":"RuntimeError",'
             '"error_message":"template not found","failed_at":"2026-12-05T10:00:00+00:00","retry_count":3,'
             '"request_id":null,"pool_alias":null}')
    client.zadd("vmpooler__dlq__clone", {f"gone-vm:1764928800:{entry}": 1764928800, "junk": 1})


def write_config(tmp_path, database_url=None) -> str:
    """The configuration file of the team's new service: the same pools, the dummy provider
    (its inventory in a file, holding the VMs the original made), users with jdoe."""
    raw = raw_config(POOLS, {"vm_lifetime": 24}, {"filename": str(tmp_path / "inventory.json")},
                     database_url or f"sqlite:///{tmp_path / 'vmpooler.db'}", auth=USERS_AUTH)
    path = tmp_path / "vmpooler.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def make_the_original_vms_exist(config_path: str) -> None:
    """The VMs the original cloned exist in the backend (here the dummy's inventory file)."""
    config = config_module.load(config_path, {}, REGISTRY)
    provider = REGISTRY.build(config)["dummy"]
    pools = {pool.name: pool for pool in config.pools}
    for name, pool in (("ready-one", "debian-7-i386"), ("ready-two", "debian-7-i386"), ("held-vm", "debian-7-i386"),
                       ("od-vm", "debian-7-i386"), ("expired-vm", "centos-7"), ("done-vm", "centos-7"),
                       ("booting-vm", "centos-7")):
        provider.create_vm(pools[pool], name)
    provider.close()


def rows(db, table):
    with db.read() as conn:
        return conn.execute(table.select()).fetchall()


def test_import_carries_every_queue_token_request_and_override(tmp_path, redis_server, db):
    """On SQLite and PostgreSQL (``db``: an empty database of either)."""
    client, url = redis_server
    now = datetime.datetime.utcnow().replace(microsecond=0)
    fill_like_the_original(client, now)
    config_path = write_config(tmp_path, db.url)

    result = vmpooler("db", "import-redis", url, "--config", config_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for line in ("imported 2 tokens", "imported 2 VMs ready", "imported 3 VMs running", "imported 1 VMs pending",
                 "imported 1 VMs completed", "imported 1 on-demand requests", "imported 1 tags",
                 "imported 1 snapshots", "imported 2 disks", "imported 1 pool overrides", "imported 2 clone samples",
                 "imported 1 boot samples",
                 "skipped VM retired-vm: its pool retired-pool is not configured here",
                 "skipped size override of pool retired-pool: the pool is not configured here",
                 "imported 1 dead letters", "skipped 1 dead-letter queue entries: not the 3.x format"):
        assert line in out, out

    try:
        by_name = {row.name: row for row in rows(db, vms)}
        assert {name: row.state for name, row in by_name.items()} == {
            "ready-one": "ready", "ready-two": "ready", "held-vm": "running", "od-vm": "running",
            "expired-vm": "running", "done-vm": "completed", "booting-vm": "pending"}
        held = by_name["held-vm"]
        assert held.checkout_at == now - datetime.timedelta(minutes=30)
        assert held.lifetime == 12 and held.expires_at == held.checkout_at + datetime.timedelta(hours=12)
        assert held.token_hash == token_hash(HELD_TOKEN) and held.token_user == "jdoe"
        assert by_name["ready-one"].ip == "192.0.2.10"
        assert by_name["booting-vm"].cloned_at is not None  # booting: the manager checks it, not clones it
        # tokens only as hashes: the clear token is nowhere in the database
        assert {(row.user, row.token_hash) for row in rows(db, tokens)} == {
            ("jdoe", token_hash(HELD_TOKEN)), ("other", token_hash(SPARE_TOKEN))}
        if db.url.startswith("sqlite"):
            assert HELD_TOKEN.encode() not in (tmp_path / "vmpooler.db").read_bytes()
        assert [(row.name, row.value) for row in rows(db, vm_tags)] == [("project", "migration")]
        assert sorted((row.kind, row.arg, row.state) for row in rows(db, tasks)) == [
            ("disk", "16", "done"), ("disk", "8", "done"), ("snapshot", "snap1", "done")]
        request = rows(db, ondemand_requests)[0]
        assert (request.request_id, request.state, request.token_user) == ("req-1", "ready", "jdoe")
        assert by_name["od-vm"].want_id is not None and held.want_id is None
        assert [(row.pool, row.setting, row.value) for row in rows(db, pool_overrides)] == [
            ("debian-7-i386", "size", "3")]
        letter = rows(db, dead_letters)[0]
        assert (letter.vm_name, letter.pool, letter.queue_from, letter.error_class, letter.retry_count) == (
            "gone-vm", "debian-7-i386", "clone", "RuntimeError", 3)
        assert letter.failed_at == datetime.datetime(2026, 12, 5, 10, 0)
        reasons = {row.vm_name: row.reason for row in rows(db, vm_events)}
        assert reasons["held-vm"] == f"imported from {url}: running in the original"
    finally:
        db.engine.dispose()

    again = vmpooler("db", "import-redis", url, "--config", config_path)
    assert again.returncode == 0 and "was imported already" in again.stdout and "nothing to do" in again.stdout


def test_a_database_holding_data_is_refused_and_left_as_it_was(tmp_path, redis_server):
    client, url = redis_server
    fill_like_the_original(client, datetime.datetime.utcnow().replace(microsecond=0))
    config_path = write_config(tmp_path)
    db = Database(f"sqlite:///{tmp_path / 'vmpooler.db'}")
    db.upgrade()
    with db.write() as conn:
        conn.execute(tokens.insert().values(token_hash="f" * 64, prefix="ffffffff", user="someone",
                                            created_at=datetime.datetime(2026, 1, 1)))
    result = vmpooler("db", "import-redis", url, "--config", config_path)
    assert result.returncode == 1
    assert "nothing imported: the database already holds data (in tokens)" in result.stderr
    assert len(rows(db, tokens)) == 1 and rows(db, vms) == []
    db.dispose()


def test_an_unreachable_redis_is_one_line(tmp_path):
    result = vmpooler("db", "import-redis", f"redis://:hunter2@127.0.0.1:{free_port()}/0",
                      "--config", write_config(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("vmpooler: cannot read redis://:***@127.0.0.1:") and "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_service_takes_over_the_imported_state(tmp_path, redis_server):
    client, url = redis_server
    fill_like_the_original(client, datetime.datetime.utcnow().replace(microsecond=0))
    config_path = write_config(tmp_path)
    make_the_original_vms_exist(config_path)
    assert vmpooler("db", "import-redis", url, "--config", config_path).returncode == 0

    service = InProcessService(config_module.load(config_path, {"VMPOOLER_DEBUG": "1"}, REGISTRY))
    try:
        # the original's token still works for its owner: vmfloaty's `floaty token status` and `list`
        status = service.client.get(f"/api/v1/token/{HELD_TOKEN}").json()
        assert status["ok"] and status[HELD_TOKEN]["user"] == "jdoe"
        assert sorted(status[HELD_TOKEN]["vms"]["running"]) == ["held-vm", "od-vm"]
        held = service.get("/vm/held-vm").json()["held-vm"]
        assert held["state"] == "running" and held["lifetime"] == 12 and held["tags"] == {"project": "migration"}
        assert "snap1" in held["snapshots"]
        # the VM that was ready longest is handed out first
        taken = service.post("/vm/debian-7-i386").json()
        assert taken["debian-7-i386"]["hostname"] == "ready-one"
        # running VMs past their lifetime and completed ones are destroyed; the pending one boots
        wait_until(lambda: vm_store.latest(service.db, "expired-vm").state == "destroyed", 30, "expired-vm destroyed")
        wait_until(lambda: vm_store.latest(service.db, "done-vm").state == "destroyed", 30, "done-vm destroyed")
        wait_until(lambda: vm_store.latest(service.db, "booting-vm").state == "ready", 30, "booting-vm ready")
        # the owner gives a VM back with the token the original issued
        assert service.client.delete("/api/v1/vm/held-vm", token=HELD_TOKEN).status == 200
        assert service.client.delete("/api/v1/vm/od-vm", token=SPARE_TOKEN).status in (401, 403)
        time.sleep(0.3)  # a few passes and a reconcile: the VMs held by clients stay held
        assert vm_store.latest(service.db, "od-vm").state == "running"
    finally:
        service.stop()
