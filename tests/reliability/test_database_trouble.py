"""Database trouble: the file locked by another process for a while, the disk full, the database
read-only. The manager skips its passes and the API answers 503 with a JSON error (nothing
half-written); both recover by themselves when the trouble ends."""
import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
import threading
import time

import pytest
from sqlalchemy import event

from tests.manager.helpers import fast_config, running, states, wait_for
from tests.reliability.harness import pools_full, service_config, wait_until
from tests.service import InProcessService
from tests.reliability.invariants import (assert_database_matches_inventory, assert_each_vm_checked_out_at_most_once,
                                          assert_every_checkout_recorded_once, assert_no_name_live_twice)


def hold_exclusive_lock(path, seconds, locked):
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    locked.set()
    time.sleep(seconds)
    connection.execute("COMMIT")
    connection.close()


def test_manager_survives_a_locked_database(db, tmp_path):
    if not db.is_sqlite:
        pytest.skip("another process locking the file is SQLite's trouble")
    config = fast_config([{"name": "a", "template": "t", "size": 4}])
    path = str(tmp_path / "vmpooler.db")

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db).get("ready") == 4)
            name = sorted(dummy.names())[0]
            dummy.remove(name)  # work for the manager while the database is locked
            manager.next_reconcile = 0
            locked = threading.Event()
            holder = threading.Thread(target=hold_exclusive_lock, args=(path, 2.5, locked))
            holder.start()
            locked.wait()
            await asyncio.sleep(2.6)
            holder.join()
            manager.next_reconcile = 0
            await wait_for(lambda: states(db).get("ready") == 4 and states(db).get("gone") == 1, timeout=10)
    asyncio.run(scenario())
    assert_no_name_live_twice(db)


# --- over HTTP: 503 with a clear JSON error, nothing half-written, recovery --------------------
POOLS = [{"name": "a", "template": "t", "size": 2}, {"name": "b", "template": "t", "size": 2}]


@contextlib.contextmanager
def locked_by_another_process(path):
    """BEGIN EXCLUSIVE held by a separate sqlite3 connection until the block ends."""
    locked, release = threading.Event(), threading.Event()

    def hold():
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(60)
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(10)


@contextlib.contextmanager
def disk_full(directory):
    """Fill the (small tmpfs) file system holding ``directory`` to its last byte."""
    filler = os.path.join(directory, "filler")
    # unbuffered: a write that does not fit is written in part, and no buffered rest is left to
    # fail again at close (a buffered file's truncate or close flushes it: ENOSPC once more)
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    try:
        yield
    finally:
        os.remove(filler)


@contextlib.contextmanager
def read_only(db):
    """Every connection the service takes from its pool refuses writes (PRAGMA query_only), as a
    database file opened read-only does: SQLite answers 'attempt to write a readonly database'."""
    flag = {"on": True}

    def on_checkout(dbapi_connection, _record, _proxy):
        dbapi_connection.execute(f"PRAGMA query_only = {int(flag['on'])}")

    event.listen(db.engine, "checkout", on_checkout)
    try:
        yield
    finally:
        # Connections checked out from now on write again. The listener stays (this database
        # belongs to the test): a pooled connection keeps its PRAGMA until its next checkout.
        flag["on"] = False


@contextlib.contextmanager
def small_tmpfs(directory):
    os.makedirs(directory)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def assert_health(client, failing=None):
    """GET /healthcheck: 200 {"ok": true} when ``failing`` is None, else 503 with ``?details``
    naming the ``failing`` check (database, disk or manager)."""
    plain, details = client.get("/healthcheck", timeout=10), client.get("/healthcheck?details", timeout=10)
    if failing is None:
        assert plain.status == 200 and plain.json() == {"ok": True}, plain.text
        assert all(check["ok"] for check in details.json()["checks"].values()), details.text
        return
    assert plain.status == 503 and plain.json()["ok"] is False, plain.text
    assert details.status == 503 and details.json()["checks"][failing]["ok"] is False, details.text


def trouble_over_http(service, trouble, words, failing_check="database"):
    """Check one VM out, then during ``trouble`` every write answers 503 {"ok": false, "error":
    <mentions words>} while reads still answer and /healthcheck answers 503 naming
    ``failing_check``; afterwards nothing was half-written, writes work again, the health check
    answers 200, the pools refill and the database matches the inventory."""
    client = service.client
    wait_until(lambda: pools_full(client, POOLS), 10, "the pools to fill")
    held = client.post("/api/v1/vm/a").json()["a"]["hostname"]
    with trouble:
        for method, path, body in (("POST", "/api/v1/vm/a+b", None), ("POST", "/api/v1/vm", {"a": 1, "b": 1}),
                                   ("PUT", f"/api/v1/vm/{held}", {"tags": {"during": "trouble"}, "lifetime": 5}),
                                   ("DELETE", f"/api/v1/vm/{held}", None)):
            started = time.monotonic()
            response = client.request(method, path, body=body)
            print(f"{method} {path} during trouble: {response.status} in {time.monotonic() - started:.2f}s")
            assert response.status == 503, (method, path, response.status, response.text)
            error = response.json()
            assert error["ok"] is False and words in error["error"], error
            assert response.headers["content-type"] == "application/json"
        started = time.monotonic()
        shown = client.get(f"/api/v1/vm/{held}")
        print(f"GET during trouble answered in {time.monotonic() - started:.2f}s")
        assert shown.status == 200 and shown.json()[held]["state"] == "running"
        assert client.get("/api/v1/status").status == 200
        assert_health(client, failing_check)
    # Nothing half-written: the refused checkouts took no VM, the refused PUT changed nothing.
    assert_every_checkout_recorded_once(service.db, [held])
    vm = client.get(f"/api/v1/vm/{held}").json()[held]
    assert vm["state"] == "running" and "tags" not in vm and vm["lifetime"] != 5
    # Recovered: writes are accepted again and the manager catches up.
    assert client.put(f"/api/v1/vm/{held}", {"tags": {"after": "trouble"}}).status == 200
    again = client.post("/api/v1/vm/b").json()["b"]["hostname"]
    assert client.delete(f"/api/v1/vm/{held}").status == 200
    wait_until(lambda: pools_full(client, POOLS), 20, "the pools to refill")
    assert_health(client)
    service.reconcile_now()
    time.sleep(0.3)
    wait_until(lambda: pools_full(client, POOLS), 10, "the pools to be quiet")
    assert_database_matches_inventory(service.db, service.dummy, service.config.pools)
    assert_every_checkout_recorded_once(service.db, [held, again])
    assert_each_vm_checked_out_at_most_once(service.db)


def test_api_answers_503_while_another_process_locks_the_database(tmp_path):
    service = InProcessService(service_config(tmp_path, POOLS))
    try:
        trouble_over_http(service, locked_by_another_process(str(tmp_path / "vmpooler.db")), "locked")
    finally:
        service.stop()


def test_api_answers_503_while_the_disk_is_full(tmp_path):
    with small_tmpfs(tmp_path / "disk") as directory:
        service = InProcessService(service_config(directory, POOLS))
        try:
            trouble_over_http(service, disk_full(directory), "full", "disk")
        finally:
            service.stop()


def test_api_answers_503_while_the_database_is_read_only(tmp_path):
    service = InProcessService(service_config(tmp_path, POOLS))
    try:
        trouble_over_http(service, read_only(service.db), "read-only")
    finally:
        service.stop()
