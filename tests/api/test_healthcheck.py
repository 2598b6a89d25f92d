"""GET /healthcheck: 200 {"ok": true} while healthy; 503 with the reasons while the database is
unavailable (really locked by another process) or the pool manager has stopped finishing passes."""
import time

import pytest

from tests.reliability.harness import service_config, wait_until
from tests.reliability.test_database_trouble import locked_by_another_process
from tests.service import InProcessService
from vmpooler.manager import scheduler


def healthy(response) -> bool:
    return response.status == 200 and response.json() == {"ok": True}


def test_healthy_without_a_manager_is_judged_on_the_database(api):
    response = api.get("/healthcheck")
    assert healthy(response) and response.headers["content-type"] == "application/json"
    assert healthy(api.get("/healthcheck/"))
    assert api.get("/api/v1/healthcheck").status == 404  # outside /api/v1, as the original
    details = api.get("/healthcheck?details").json()
    assert details["ok"] is True and "leader" in details["manager"]
    assert details["checks"] == {"database": {"ok": True}, "disk": {"ok": True}, "manager": {"ok": True}}


def test_503_while_another_process_locks_the_database(api, tmp_path):
    if not api.db.is_sqlite:
        pytest.skip("another process locking the file is SQLite's trouble")
    with locked_by_another_process(str(tmp_path / "vmpooler.db")):
        response = api.get("/healthcheck")
        assert response.status == 503, response.text
        body = response.json()
        assert body["ok"] is False and body["reasons"] == ["the database is unavailable: the database is locked by "
                                                           "another process"]
        assert body["error"] == body["reasons"][0]
        assert api.get("/api/v1/vm").status == 200  # the IOLoop kept serving
    assert healthy(api.get("/healthcheck"))


class BrokenLoop:
    """A loop whose every pass fails, as a bug would make it."""

    __name__ = "broken"

    @staticmethod
    def run(manager, now):
        raise RuntimeError("a bug")


def test_503_while_the_manager_finishes_no_pass(tmp_path, monkeypatch):
    service = InProcessService(service_config(tmp_path, [{"name": "a", "template": "t", "size": 1}]))
    try:
        assert healthy(service.client.get("/healthcheck"))
        monkeypatch.setattr(scheduler, "LOOPS", scheduler.LOOPS + (BrokenLoop,))
        started = time.monotonic()
        stalled = wait_until(lambda: service.client.get("/healthcheck").status == 503 and
                             service.client.get("/healthcheck"), 15, "the stall to be reported")
        waited = time.monotonic() - started
        assert waited >= scheduler.STALL_SECONDS - 0.5
        reasons = stalled.json()["reasons"]
        assert len(reasons) == 1 and reasons[0].startswith("the pool manager has not finished a pass for")
        monkeypatch.setattr(scheduler, "LOOPS", scheduler.LOOPS[:-1])
        wait_until(lambda: healthy(service.client.get("/healthcheck")), 10, "recovery")
    finally:
        service.stop()


def test_the_whole_service_answers_503_while_the_database_is_locked_and_recovers(tmp_path):
    service = InProcessService(service_config(tmp_path, [{"name": "a", "template": "t", "size": 1}]))
    try:
        wait_until(lambda: healthy(service.client.get("/healthcheck")), 10, "a healthy start")
        with locked_by_another_process(str(tmp_path / "vmpooler.db")):
            response = service.client.get("/healthcheck")
            assert response.status == 503 and response.json()["reasons"][0].startswith("the database is unavailable")
        wait_until(lambda: healthy(service.client.get("/healthcheck")), 15, "recovery")
    finally:
        service.stop()
