"""No cached answer is older than a change another process announced: two API processes on one
PostgreSQL database, /status cached for a minute on each."""
import os

import pytest
from sqlalchemy import text

from tests.conftest import add_vm
from tests.reliability.harness import raw_config, wait_until
from tests.service import InProcessService
from vmpooler import config as config_module
from vmpooler.db.database import Database
from vmpooler.db.models import metadata
from vmpooler.providers.registry import REGISTRY

URL = os.environ.get("VMPOOLER_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="needs $VMPOOLER_TEST_POSTGRES_URL (scripts/test.sh sets it)")
POOLS = [{"name": "a", "template": "tmpl-a", "size": 2}]


@pytest.fixture
def two_api_processes():
    db = Database(URL)
    with db.engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    db.upgrade()
    config = config_module.build(raw_config(POOLS, {"status_cache_seconds": 60}, None, URL),
                                 {"VMPOOLER_DEBUG": "1"}, REGISTRY)
    processes = [InProcessService(config, role="api") for _ in range(2)]
    yield db, config, processes
    for process in processes:
        process.stop()
    db.dispose()


def ready(process) -> int:
    return process.get("/status").json()["pools"]["a"]["ready"]


def test_status_on_one_process_shows_a_pool_another_process_emptied(two_api_processes):
    db, config, (first, second) = two_api_processes
    for process in (first, second):
        assert process.service.listener.connected.wait(10)
    for _ in range(2):
        add_vm(db, config.pools_by_name["a"], "ready")
    wait_until(lambda: ready(second) == 2, 10, "the second process to see the two ready VMs")
    assert ready(second) == 2  # cached now, for a minute unless something changes
    assert first.client.post("/api/v1/vm/a+a").status == 200
    assert ready(first) == 0  # its own change: at once
    wait_until(lambda: ready(second) == 0, 10, "the second process to hear of the first one's checkout")
