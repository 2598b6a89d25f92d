"""On PostgreSQL the IOLoop never waits on the database: a request stuck in the database (the
proxy in front of PostgreSQL holds every byte) does not stop another request from being answered."""
import os
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.api.conftest import Client, Server
from tests.conftest import add_vm, make_config
from tests.netproxy import DelayProxy
from vmpooler.api.routes import make_app
from vmpooler.context import Context
from vmpooler.db.database import Database
from vmpooler.db.models import metadata

URL = os.environ.get("VMPOOLER_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="needs $VMPOOLER_TEST_POSTGRES_URL")


def _wait(predicate, what, timeout=10.0):
    event = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        event.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def seeded():
    """The test database, emptied and upgraded, with a pool of 3 ready VMs; yields its config."""
    config = make_config(pools=[{"name": "a", "template": "t", "size": 3}])
    direct = Database(URL)
    with direct.engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    direct.upgrade()
    for _ in range(3):
        add_vm(direct, config.pools[0])
    direct.dispose()
    yield config


def test_a_request_waiting_on_the_database_does_not_stop_another(seeded):
    url = make_url(URL)
    proxy = DelayProxy(url.port or 5432, delay=0.001).start()
    db = Database(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    server = Server(make_app(Context(config=seeded, db=db)))
    client = Client(server.port)
    try:
        assert client.post("/api/v1/vm/a").status == 200  # through the proxy, 1 ms each way
        proxy.pause()
        stuck = {}
        waiting = threading.Thread(target=lambda: stuck.update(answer=client.post("/api/v1/vm/a", timeout=60)))
        waiting.start()
        _wait(lambda: db.group.in_flight == 1, "the checkout to wait on the database")
        # the IOLoop is free: a request that needs no database is answered meanwhile
        assert client.get("/api/v1/vm", timeout=10).status == 200
        assert "answer" not in stuck and db.group.in_flight == 1  # still stuck in the database
        proxy.resume()
        waiting.join(30)
        assert stuck["answer"].status == 200
    finally:
        proxy.resume()
        server.stop()
        db.dispose()
        proxy.close()
