"""GET /vm/<host> shows each snapshot, revert and disk task with its state, times and error (the
original dropped a failed snapshot silently)."""
import datetime

from tests.reliability.harness import service_config, wait_until
from tests.service import InProcessService


def parse_time(text):
    return datetime.datetime.fromisoformat(text)


def test_a_queued_task_is_shown_with_its_kind_argument_and_time(api):
    name = api.checkout()
    assert "tasks" not in api.get(f"/api/v1/vm/{name}").json()[name]
    snapshot = api.post(f"/api/v1/vm/{name}/snapshot").json()[name]["snapshot"]
    api.post(f"/api/v1/vm/{name}/disk/8")
    shown = api.get(f"/api/v1/vm/{name}").json()[name]
    assert [(t["kind"], t["argument"], t["state"], t["attempts"]) for t in shown["tasks"]] == [
        ("snapshot", snapshot, "queued", 0), ("disk", "8", "queued", 0)]
    assert all(set(t) == {"kind", "argument", "state", "attempts", "queued_at"} for t in shown["tasks"])
    assert abs(parse_time(shown["tasks"][0]["queued_at"]) - datetime.datetime.now(datetime.timezone.utc)) < \
        datetime.timedelta(minutes=1)
    assert "snapshots" not in shown and "disk" not in shown  # not taken yet


def test_a_failing_snapshot_is_shown_failed_with_its_error(tmp_path):
    config = service_config(tmp_path, [{"name": "a", "template": "t", "size": 1}],
                            settings={"task_attempts": 2}, dummy={"createsnapshot_fail_percent": 100})
    service = InProcessService(config)
    try:
        client = service.client
        wait_until(lambda: client.get("/api/v1/status").json()["pools"]["a"]["ready"] == 1, 10, "a ready VM")
        name = client.post("/api/v1/vm/a").json()["a"]["hostname"]
        snapshot = client.post(f"/api/v1/vm/{name}/snapshot").json()[name]["snapshot"]
        disk = client.post(f"/api/v1/vm/{name}/disk/4")
        assert disk.status == 202

        def finished():
            tasks = client.get(f"/api/v1/vm/{name}").json()[name]["tasks"]
            return tasks if all(t["state"] in ("done", "failed") for t in tasks) else None

        failed, added = wait_until(finished, 15, "both tasks to finish")
        assert failed["kind"] == "snapshot" and failed["argument"] == snapshot and failed["state"] == "failed"
        assert failed["attempts"] == 2 and "simulated snapshot failure" in failed["error"]
        assert parse_time(failed["finished_at"]) >= parse_time(failed["queued_at"])
        assert added["kind"] == "disk" and added["state"] == "done" and "error" not in added
        shown = client.get(f"/api/v1/vm/{name}").json()[name]
        assert "snapshots" not in shown and shown["disk"] == ["+4gb"]
    finally:
        service.stop()
