"""A manager-only process (``vmpooler serve --role manager``) serves its metrics as the original's
does: with a ``:prometheus:`` section it listens on --host/--port for the metrics endpoint and
/healthcheck, nothing else; without one it serves no HTTP (tests/scaleout/ checks that). A real
subprocess, its scrapes read by prometheus_client's parser. The API-and-manager split over two
processes is tests/scaleout/test_processes.py's."""
import pytest

from tests.api.conftest import scrape, values
from tests.reliability.harness import ServerProcess, wait_until

#: a (0.3 s ready_ttl) keeps being recycled, so its clone and destroy counters keep moving
POOLS = [{"name": "a", "template": "t", "size": 2, "ready_ttl": 0.005}, {"name": "b", "template": "t", "size": 1}]
PROMETHEUS = {"prefix": "mgr", "prometheus_prefix": "pooler", "prometheus_endpoint": "/metrics"}


@pytest.fixture
def manager(tmp_path, db):
    process = ServerProcess(tmp_path, POOLS, database_url=db.url, role="manager", prometheus=PROMETHEUS).start()
    yield process
    process.kill_if_running()


def counts(families, family: str) -> dict:
    """{pool: observations} of a histogram."""
    return values(families, family, f"{family}_count")


def scrape_until(manager, holds, what: str) -> dict:
    """The first scrape of the manager's endpoint (families by name) for which ``holds`` is true."""
    def attempt():
        families = scrape(manager.client, "/metrics")[1]
        return families if holds(families) else None
    return wait_until(attempt, 20, what)


def test_a_manager_process_serves_its_moving_metrics_on_the_configured_endpoint(manager):
    first = scrape_until(manager, lambda f: counts(f, "pooler_clone").get("a", 0) >= 2,
                         "pool a's first clones in the manager's metrics")
    # the recycled VMs of pool a are destroyed and cloned again: the counters move between scrapes
    later = scrape_until(manager, lambda f: counts(f, "pooler_clone")["a"] >= counts(first, "pooler_clone")["a"] + 2
                         and counts(f, "pooler_destroy").get("a", 0) >= 2,
                         "pool a's clone and destroy counters to move")
    assert counts(later, "pooler_time_to_ready_state")["a"] > counts(first, "pooler_time_to_ready_state")["a"]
    scrape_until(manager, lambda f: values(f, "pooler_ready").get("b") == 1, "pool b's ready gauge")
    # its own scrapes are counted as the original's collector middleware counts requests
    assert values(later, "pooler_http_requests", code="200", method="get", path="/metrics")
    assert all(sample.labels["vmpooler_instance"] == "mgr" for family in later.values() for sample in family.samples)
    health = manager.client.get("/healthcheck")
    assert (health.status, health.json()) == (200, {"ok": True})
    for path in ("/api/v1/vm", "/api/v1/status", "/prometheus", "/dashboard/"):  # no API beside the metrics
        response = manager.client.get(path)
        assert (response.status, response.headers["content-type"], response.json()["ok"]) == (
            404, "application/json", False), path
    assert f"listening on http://127.0.0.1:{manager.port}/metrics and /healthcheck only" in manager.log()
    assert manager.stop() == 0
    assert "Traceback" not in manager.log()
