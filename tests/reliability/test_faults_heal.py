"""Faults that end heal without a restart (issue 18 item 3): the database file made immutable (so
SQLite can open it only read-only) and then writable again; PostgreSQL's connections cut (its
backends terminated, as a restart of the server does). And starting on a read-only or unreachable
database exits with one line saying what and where."""
import contextlib
import os
import subprocess
import threading
import time

import pytest
import yaml
from sqlalchemy import text

from tests.api.conftest import Client
from tests.reliability.harness import pools_full, raw_config, service_config, wait_until
from tests.reliability.test_database_trouble import assert_health, small_tmpfs
from tests.reliability.invariants import assert_each_vm_checked_out_at_most_once, assert_every_checkout_recorded_once
from tests.service import InProcessService
from tests.test_cli import free_port, vmpooler
from vmpooler import config as config_module
from vmpooler.db.database import Database
from vmpooler.db.models import metadata
from vmpooler.providers.registry import REGISTRY

POOLS = [{"name": "a", "template": "t", "size": 2}, {"name": "b", "template": "t", "size": 2}]
POSTGRES_URL = os.environ.get("VMPOOLER_TEST_POSTGRES_URL")


def sqlite_files(directory):
    """The database and its WAL. (Not the -shm index: SQLite maps it, and a mapping it cannot grow
    while the file is immutable ends the process with SIGBUS, a hazard of the test, not of a real
    read-only mount, where the index is opened read-only from the start.)"""
    return [os.path.join(directory, name) for name in ("vmpooler.db", "vmpooler.db-wal")]


def require_chattr(directory):
    """Skip unless the file system of ``directory`` takes the immutable attribute (ext4, xfs,
    btrfs, tmpfs do; root is bound by it, unlike by chmod)."""
    probe = os.path.join(directory, "chattr-probe")
    open(probe, "w").close()
    made = subprocess.run(["chattr", "+i", probe], capture_output=True, text=True)
    subprocess.run(["chattr", "-i", probe], capture_output=True)
    os.remove(probe)
    if made.returncode != 0:
        pytest.skip(f"chattr +i does not work here (needs root and a file system with the flag): {made.stderr}")


@contextlib.contextmanager
def immutable(paths):
    """chattr +i: no process, root included, may write the files or open them for writing; SQLite
    opens such a file read-only (silently) and gets I/O errors writing through older descriptors."""
    subprocess.run(["chattr", "+i", *paths], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *paths], check=True)


@contextlib.contextmanager
def readers(port, seconds):
    """Four clients reading (GET /status, /vm, /healthcheck) for ``seconds``: during a fault they
    make the service open new connections, which SQLite may open read-only."""
    stop, statuses = threading.Event(), []

    def read():
        client = Client(port)
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            for path in ("/api/v1/status", "/api/v1/vm", "/healthcheck"):
                statuses.append((path, client.get(path, timeout=10).status))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)


def checkout(client, pool="a"):
    response = client.post(f"/api/v1/vm/{pool}", timeout=10)
    return response.json()[pool]["hostname"] if response.status == 200 else None


def test_an_immutable_database_file_heals_without_a_restart(tmp_path):
    require_chattr(str(tmp_path))
    service = InProcessService(service_config(tmp_path, POOLS))
    client = service.client
    try:
        wait_until(lambda: pools_full(client, POOLS), 10, "the pools to fill")
        held = [checkout(client)]
        with immutable(sqlite_files(str(tmp_path))), readers(service.port, 3) as statuses:
            refused = client.post("/api/v1/vm/b", timeout=10)
            assert refused.status == 503, refused.text
            assert "read-only" in refused.json()["error"] or "I/O" in refused.json()["error"], refused.text
            assert_health(client, "database")  # its heartbeat write is refused too
            time.sleep(3)  # the readers open connections while the file is immutable
        assert ("/api/v1/status", 200) in statuses  # reads went on
        # Healed: within seconds of the fault's end writes work and the pools refill, no restart.
        ended = time.monotonic()
        held.append(wait_until(lambda: checkout(client, "b"), 5, "a checkout to work again"))
        print(f"first checkout {time.monotonic() - ended:.2f}s after the fault ended")
        wait_until(lambda: pools_full(client, POOLS), 10, "the pools to refill")
        # No read-only connection stayed pooled: every write since works, on every connection.
        for _ in range(10):
            assert client.put(f"/api/v1/vm/{held[0]}", {"tags": {"healed": "yes"}}, timeout=10).status == 200
        assert_health(client)
        assert_every_checkout_recorded_once(service.db, held)
        assert_each_vm_checked_out_at_most_once(service.db)
    finally:
        service.stop()


@pytest.mark.skipif(not POSTGRES_URL, reason="needs $VMPOOLER_TEST_POSTGRES_URL (scripts/test.sh sets it)")
def test_postgresql_connections_cut_by_the_server_are_replaced(tmp_path):
    """What a restart of PostgreSQL does to the service's connections, made without stopping a
    server other tests share: every backend of the database is terminated, twice."""
    database = Database(POSTGRES_URL)
    with database.engine.begin() as conn:  # an empty database: the service migrates it
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    raw = raw_config(POOLS, database=POSTGRES_URL)
    service = InProcessService(config_module.build(raw, {"VMPOOLER_DEBUG": "1"}, REGISTRY))
    client = service.client
    try:
        wait_until(lambda: pools_full(client, POOLS), 15, "the pools to fill")
        held = []
        for _ in range(2):
            with database.engine.connect() as conn:
                cut = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
            assert cut >= 2, cut  # the service's pooled connections and its LISTEN connection
            ended = time.monotonic()
            held.append(wait_until(lambda: checkout(client), 5, "a checkout after the connections were cut"))
            print(f"first checkout {time.monotonic() - ended:.2f}s after {cut} backends were terminated")
            wait_until(lambda: pools_full(client, POOLS), 10, "the pools to refill")
        assert client.get("/healthcheck").status == 200
        assert_every_checkout_recorded_once(service.db, held)
        assert_each_vm_checked_out_at_most_once(service.db)
    finally:
        service.stop()
        database.dispose()


def serve_once(tmp_path, database_url):
    """``vmpooler serve`` on ``database_url``, which must exit by itself within 30 s."""
    config = tmp_path / "vmpooler.yaml"
    config.write_text(yaml.safe_dump(raw_config(POOLS, database=database_url)))
    return vmpooler("serve", "--config", str(config), "--port", str(free_port()))


def assert_one_line_refusal(result, *words):
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.startswith("vmpooler: cannot start")]
    assert len(lines) == 1, result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.stderr, result.stderr


def up_to_date_database(path):
    """An SQLite database at ``path`` with every migration applied: start-up has nothing to
    migrate, only its heartbeat to write."""
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    database.dispose()


def test_starting_on_an_immutable_database_says_so_in_one_line(tmp_path):
    require_chattr(str(tmp_path))
    path = tmp_path / "vmpooler.db"
    up_to_date_database(path)
    with immutable([str(path)]):
        result = serve_once(tmp_path, f"sqlite:///{path}")
    assert_one_line_refusal(result, "read-only", str(path))


def test_starting_on_a_read_only_mount_says_so_in_one_line(tmp_path):
    with small_tmpfs(tmp_path / "mount") as directory:
        path = directory / "vmpooler.db"
        up_to_date_database(path)  # closed: nothing may hold a file open for writing at the remount
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
        result = serve_once(tmp_path, f"sqlite:///{path}")
    assert_one_line_refusal(result, "file system is mounted read-only", str(path))


def test_starting_on_an_unreachable_database_says_so_in_one_line(tmp_path):
    result = serve_once(tmp_path, f"postgresql://vmpooler:secret@127.0.0.1:{free_port()}/vmpooler")
    assert_one_line_refusal(result, "refused the connection", "127.0.0.1")
    assert "secret" not in result.stderr
    result = serve_once(tmp_path, f"sqlite:///{tmp_path}/no/such/directory/vmpooler.db")
    assert_one_line_refusal(result, "directory does not exist", "no/such/directory")
