"""Run-time pool configuration through the whole service over HTTP: the manager applies each
change, and every override is kept across a restart (the original lost them with Redis)."""
from sqlalchemy import select

from tests.reliability.harness import service_config, wait_until
from tests.service import InProcessService
from vmpooler.db.models import vms

POOLS = [{"name": "a", "template": "t/old", "size": 2}, {"name": "b", "template": "t/b", "size": 1}]


def ready(client, pool):
    return client.get("/api/v1/status").json()["pools"][pool]["ready"]


def live_templates(db, pool):
    with db.read() as conn:
        return sorted(row.template for row in conn.execute(select(vms).where(vms.c.pool == pool,
                                                                             vms.c.state.in_(("pending", "ready")))))


def test_overrides_are_applied_and_survive_a_restart(tmp_path):
    config = service_config(tmp_path, POOLS, settings={"experimental_features": True},
                            dummy={"filename": str(tmp_path / "dummy.json")})
    service = InProcessService(config)
    try:
        client = service.client
        wait_until(lambda: ready(client, "a") == 2 and ready(client, "b") == 1, 10, "the pools to fill")
        assert client.post("/api/v1/config/poolsize", {"a": 3, "b": 0}).status == 201
        assert client.post("/api/v1/config/pooltemplate", {"a": "t/new"}).status == 201
        wait_until(lambda: live_templates(service.db, "a") == ["t/new"] * 3 and ready(client, "a") == 3
                   and ready(client, "b") == 0, 15, "the changes to be applied")
        assert client.get("/api/v1/config").json()["pool_configuration"][0]["template_ready"] is True
    finally:
        service.stop()
    service = InProcessService(config)
    try:
        client = service.client
        pools = {p["name"]: p for p in client.get("/api/v1/config").json()["pool_configuration"]}
        assert (pools["a"]["size"], pools["a"]["template"], pools["b"]["size"]) == (3, "t/new", 0)
        status = client.get("/api/v1/status").json()["pools"]
        assert status["a"]["max"] == 3 and status["b"]["max"] == 0
        service.reconcile_now()
        wait_until(lambda: ready(client, "a") == 3, 10, "pool a to be full after the restart")
        assert live_templates(service.db, "a") == ["t/new"] * 3 and live_templates(service.db, "b") == []
        assert service.dummy.names() and all(
            service.dummy.get_vm(None, name).template == "t/new" for name in service.dummy.names())
        # undoing works after the restart too
        undone = client.delete("/api/v1/config/poolsize/b")
        assert undone.status == 201 and undone.json() == {"ok": True, "pool_size_before_reset": 0,
                                                          "pool_size_before_overrides": 1}
        wait_until(lambda: ready(client, "b") == 1, 10, "pool b to refill")
    finally:
        service.stop()
