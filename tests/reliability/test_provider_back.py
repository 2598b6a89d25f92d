"""Over HTTP, the whole service in this process: a pool backing off after failed clones shows
under GET /status (``pools.<pool>.waiting``: why, until when) while the provider is down, and
the wait ends, the pool refilled, within seconds of the provider answering again, long before
its backoff would have."""
import time

from tests.reliability.harness import pools_full, service_config, wait_until
from tests.service import InProcessService

POOLS = [{"name": "a", "template": "t", "size": 2}]


def waiting(client):
    return client.get("/api/v1/status?view=pools").json()["pools"]["a"].get("waiting")


def test_status_shows_the_waiting_pool_and_the_provider_coming_back_ends_the_wait(tmp_path):
    config = service_config(tmp_path, POOLS, settings={
        "retry_backoff": 1, "retry_backoff_max": 120, "circuit_breaker_failure_threshold": 3,
        "circuit_breaker_timeout": 0.5, "circuit_breaker_half_open_attempts": 2, "reconcile_interval": 3600,
        "clone_attempts": 1000})
    service = InProcessService(config)
    client = service.client
    try:
        wait_until(lambda: pools_full(client, POOLS), 10, "the pool to fill")
        assert waiting(client) is None
        service.dummy.knobs.update(createvm_fail_percent=100, listvms_fail_percent=100)
        for hostname in client.post("/api/v1/vm/a+a").json()["a"]["hostname"]:
            assert client.delete(f"/api/v1/vm/{hostname}").status == 200
        shown = wait_until(lambda: (w := waiting(client)) and w["failures"] >= 4 and w, 30, "a long wait shown")
        assert shown["provider"] == "dummy" and "clones failed in a row: dummy: simulated clone failure" in shown["reason"]
        assert shown["waiting_for"] in ("backoff", "circuit breaker") and shown["until"].endswith("+00:00")
        service.dummy.knobs.update(createvm_fail_percent=0, listvms_fail_percent=0)
        back = time.monotonic()
        wait_until(lambda: pools_full(client, POOLS), 8, "the pool to refill after the provider came back")
        assert time.monotonic() - back < 8
        assert waiting(client) is None
    finally:
        service.stop()
