"""Load: 64 concurrent clients for a bounded time against a real server process whose pools empty
and refill. Every request gets an answer (200, or the clean 503 of an empty pool), the server's
memory stays flat and it leaks no file descriptors; afterwards the database matches the inventory.
"""
import http.client
import random
import threading
import time

from tests.reliability.harness import ServerProcess, pools_full, wait_until
from tests.reliability.invariants import (assert_each_vm_checked_out_at_most_once, assert_every_checkout_recorded_once,
                                          assert_live_set_is)

POOLS = [{"name": "a", "template": "t", "size": 8}, {"name": "b", "template": "t", "size": 4}]
CLIENTS, WARM_UP, SECONDS, MAX_REQUESTS_PER_CLIENT = 64, 2.0, 10.0, 2000
#: RSS growth allowed between the end of the warm-up and the end of the load
RSS_SLACK_KB = 16 * 1024
#: file descriptors the server may hold more at the end (one more pooled database connection)
FD_SLACK = 2


def test_64_clients_every_request_answered_memory_flat_no_fd_leak(tmp_path):
    server = ServerProcess(tmp_path, POOLS, dummy={"createvm_max_time": 0.01, "destroyvm_max_time": 0.01},
                           settings={"reconcile_interval": 1}).start()
    seed = random.randrange(2 ** 32)
    lock = threading.Lock()
    handed_out, wrong, counts = [], [], {"requests": 0, "empty": 0}
    start = time.monotonic()
    deadline = start + WARM_UP + SECONDS

    def client_loop(number):
        rng = random.Random(seed + number)
        client = server.client
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() > deadline:
                return
            try:
                pool = rng.choice("aab")
                response = client.post(f"/api/v1/vm/{pool}", timeout=30)
                answers = [("checkout", response)]
                if response.status == 200:
                    name = response.json()[pool]["hostname"]
                    with lock:
                        handed_out.append(name)
                    answers.append(("get", client.get(f"/api/v1/vm/{name}", timeout=30)))
                    answers.append(("delete", client.delete(f"/api/v1/vm/{name}", timeout=30)))
                if rng.random() < 0.2:
                    answers.append(("status", client.get("/api/v1/status", timeout=30)))
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    wrong.append(("no answer", repr(error)))
                continue
            with lock:
                counts["requests"] += len(answers)
                for kind, answer in answers:
                    if answer.status == 503 and kind == "checkout" and "not enough ready VMs" in answer.text:
                        counts["empty"] += 1
                    elif answer.status != 200:
                        wrong.append((kind, answer.status, answer.text[:200]))

    try:
        wait_until(lambda: pools_full(server.client, POOLS), 20, "the pools to fill")
        fds_before = server.open_fds()
        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(CLIENTS)]
        start = time.monotonic()
        deadline = start + WARM_UP + SECONDS
        for thread in threads:
            thread.start()
        time.sleep(WARM_UP)
        rss_warm = server.rss_kb()
        for thread in threads:
            thread.join(SECONDS + 60)
        rss_end = server.rss_kb()
        wait_until(lambda: pools_full(server.client, POOLS), 20, "the pools to refill")
        time.sleep(1.2)  # one reconcile pass (reconcile_interval 1)
        wait_until(lambda: pools_full(server.client, POOLS), 20, "the pools to be quiet")
        # Sockets of the last requests may take a moment to close; a leak grows with the requests
        # (thousands here), so a settled count within FD_SLACK of the start means none.
        fds_after = min(server.open_fds() for _ in range(20) if time.sleep(0.05) is None)
        fd_targets = server.fd_targets()
        db = server.database()
        try:
            assert_live_set_is(db, server.inventory())
            assert_every_checkout_recorded_once(db, handed_out)
            assert_each_vm_checked_out_at_most_once(db)
        finally:
            db.dispose()
    finally:
        assert server.stop() == 0
    print(f"load seed {seed}: {counts['requests']} requests ({counts['empty']} empty-pool 503s), "
          f"{len(handed_out)} checkouts in {time.monotonic() - start:.1f}s; RSS {rss_warm} -> {rss_end} kB; "
          f"fds {fds_before} -> {fds_after}")
    assert wrong == [], wrong[:5]
    assert len(handed_out) > 100 and counts["empty"] > 0, "the pools must have emptied and refilled"
    assert rss_end - rss_warm < RSS_SLACK_KB, f"RSS grew from {rss_warm} to {rss_end} kB"
    assert fds_after <= fds_before + FD_SLACK, f"file descriptors: {fds_before} before, {fds_after} after: {fd_targets}"
    assert "Traceback" not in server.log()
