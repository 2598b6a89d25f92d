"""Issue 18 item 9: reads are not held up behind another process's SQLite write lock (writes wait
for it off the IOLoop and answer 503 with Retry-After past the busy timeout), and a leader paused
past its lease logs that it stopped managing."""
import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from tests.reliability.harness import ServerProcess, pools_full, service_config, wait_until
from tests.reliability.invariants import assert_each_vm_checked_out_at_most_once, assert_every_checkout_recorded_once
from tests.service import InProcessService

POOLS = [{"name": "a", "template": "t", "size": 2}]


def locked(path) -> bool:
    """Whether another connection holds the write lock of the SQLite file at ``path``."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        assert "locked" in str(error), error
        return True
    finally:
        probe.close()


@contextlib.contextmanager
def sqlite3_process_holding_the_write_lock(path):
    """The sqlite3 command-line shell, a process of its own, in BEGIN EXCLUSIVE until the block ends."""
    shell = subprocess.Popen(["sqlite3", path], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        shell.stdin.write("BEGIN EXCLUSIVE;\nUPDATE pools SET size = size;\n")
        shell.stdin.flush()
        wait_until(lambda: locked(path), 10, "the sqlite3 process to hold the write lock")
        yield shell
    finally:
        if shell.poll() is None:
            shell.communicate("ROLLBACK;\n.quit\n", timeout=10)


@pytest.fixture
def service(tmp_path):
    running = InProcessService(service_config(tmp_path, POOLS))
    yield running
    running.stop()


def test_reads_answer_while_a_write_waits_for_another_process_and_the_write_gets_503_with_retry_after(
        service, tmp_path):
    if not service.db.is_sqlite:
        pytest.skip("the write lock of a file is SQLite's")
    client = service.client
    wait_until(lambda: pools_full(client, POOLS), 10, "the pool to fill")
    held = client.post("/api/v1/vm/a").json()["a"]["hostname"]
    wait_until(lambda: pools_full(client, POOLS), 10, "the pool to refill")
    moved = service.db.group.stats["moved_to_thread"]
    with sqlite3_process_holding_the_write_lock(str(tmp_path / "vmpooler.db")):
        answers = {}
        writer = threading.Thread(target=lambda: answers.update(put=client.put(
            f"/api/v1/vm/{held}", {"tags": {"during": "lock"}}, timeout=20)))
        writer.start()
        # the write is waiting for the lock, in a thread: the IOLoop answers reads meanwhile
        wait_until(lambda: service.db.group.stats["moved_to_thread"] > moved, 5, "the write to wait off the IOLoop")
        answered_while_waiting = 0
        for path in (f"/api/v1/vm/{held}", "/api/v1/status", "/api/v1/vm") * 5:
            response = client.get(path, timeout=20)
            assert response.status == 200, (path, response.status, response.text)
            answered_while_waiting += writer.is_alive()
        print(f"{answered_while_waiting} of 15 reads answered while the write waited for the lock")
        assert answered_while_waiting >= 1, "every read waited for the write"
        writer.join(20)
        put = answers["put"]
        assert put.status == 503 and "locked" in put.json()["error"], put.text
        assert put.headers["retry-after"] == "1"
    vm = client.get(f"/api/v1/vm/{held}").json()[held]
    assert "tags" not in vm  # the refused write changed nothing
    assert client.put(f"/api/v1/vm/{held}", {"tags": {"after": "lock"}}).status == 200
    assert client.get(f"/api/v1/vm/{held}").json()[held]["tags"] == {"after": "lock"}
    assert_every_checkout_recorded_once(service.db, [held])


def test_a_write_that_gets_the_lock_within_the_busy_timeout_succeeds(service, tmp_path):
    if not service.db.is_sqlite:
        pytest.skip("the write lock of a file is SQLite's")
    client = service.client
    wait_until(lambda: pools_full(client, POOLS), 10, "the pool to fill")
    with sqlite3_process_holding_the_write_lock(str(tmp_path / "vmpooler.db")) as shell:
        answers = {}
        writer = threading.Thread(target=lambda: answers.update(post=client.post("/api/v1/vm/a", timeout=20)))
        writer.start()
        # 15 s: on a loaded machine the IOLoop may itself be slowed by the lock (a new SQLite
        # connection's pragmas wait up to the busy timeout), seen once in a full run at 5 s
        wait_until(lambda: service.db.group.stats["moved_to_thread"] > 0, 15, "the checkout to wait off the IOLoop")
        shell.communicate("ROLLBACK;\n.quit\n", timeout=10)  # released well within the 1 s busy timeout
    writer.join(20)
    assert answers["post"].status == 200, answers["post"].text
    hostname = answers["post"].json()["a"]["hostname"]
    assert_every_checkout_recorded_once(service.db, [hostname])
    assert_each_vm_checked_out_at_most_once(service.db)


def test_a_leader_paused_past_its_lease_logs_that_it_stopped_managing(tmp_path):
    server = ServerProcess(tmp_path, POOLS, settings={"leader_lease_seconds": 1})
    server.start()
    try:
        wait_until(lambda: pools_full(server.client, POOLS), 10, "the pool to fill")
        os.kill(server.process.pid, signal.SIGSTOP)  # a hung leader: no renewal for 2.5 leases
        time.sleep(2.5)
        os.kill(server.process.pid, signal.SIGCONT)
        wait_until(lambda: "lease lapsed" in server.log(), 10, "the lapse to be logged")
        log = server.log()
        assert "stopped running the pool manager" in log and "no longer runs the pool manager" in log
        # nobody else wanted the lease: it takes it back, reconciles, and manages again
        wait_until(lambda: server.log().count("now runs the pool manager") == 2, 10, "a new term")
        assert server.client.post("/api/v1/vm/a").status == 200
        wait_until(lambda: pools_full(server.client, POOLS), 10, "the pool to refill")
        assert "Traceback" not in server.log()
    finally:
        assert server.stop() == 0
