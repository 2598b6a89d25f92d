"""The dead-letter queue, auto-purge, queue health and timeout_notification (3.8.1's queue
reliability keys), each failure made for real in the whole service on the dummy provider."""
import datetime
import logging

import pytest

from tests.reliability.harness import service_config, wait_until
from tests.service import InProcessService
from tests.test_cli import vmpooler
from vmpooler.db import dead_letters, queue_health
from vmpooler.db.database import utcnow
from vmpooler.model import DeadLetter, DeadLetterQueue

POOL = [{"name": "debian", "template": "debian", "size": 1}]


def letters(service, version="v1", query=""):
    answer = service.client.get(f"/api/{version}/dlq{query}")
    assert answer.status == 200, answer.text
    return answer.json()["dlq"]


def run(tmp_path, settings=None, dummy=None, pools=POOL, **sections):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return InProcessService(service_config(tmp_path, pools, settings, dummy, **sections))


def test_a_clone_given_up_is_a_dead_letter_with_its_class_and_retries(tmp_path):
    # max_vm_retries is 3.8.1's name for clone_attempts
    service = run(tmp_path, {"max_vm_retries": 2}, {"createvm_fail_percent": 100})
    try:
        found = wait_until(lambda: letters(service), 30, "a dead letter")
        entry = found[0]
        assert (entry["pool"], entry["queue_from"], entry["error_class"], entry["retry_count"]) == (
            "debian", "clone", "TransientError", 2)
        assert "dummy" in entry["error_message"] and entry["failed_at"].endswith("+00:00")
        assert letters(service, "v3") == letters(service)[:len(letters(service, "v3"))]  # every version serves it
        assert letters(service, query="?queue=pending") == []
    finally:
        service.stop()


def test_a_pending_timeout_and_an_unreachable_ready_vm_are_dead_letters(tmp_path):
    pools = [{"name": "slow", "template": "slow", "size": 1, "timeout": 0.005},  # 0.3 s
             {"name": "flaky", "template": "flaky", "size": 1}]
    slow = run(tmp_path / "slow", {"timeout": 0.005}, {"boot_max_time": 60}, pools=pools[:1])
    try:
        entry = wait_until(lambda: letters(slow), 30, "a timed-out VM")[0]
        assert (entry["queue_from"], entry["error_class"]) == ("pending", "Timeout")
        assert entry["error_message"].startswith("still pending after 0.005 minutes: ")
    finally:
        slow.stop()
    flaky = run(tmp_path / "flaky", {"vm_checktime": 0.001}, {"getvm_poweroff_percent": 100}, pools=pools[1:])
    try:
        entry = wait_until(lambda: letters(flaky), 30, "an unreachable ready VM")[0]
        assert (entry["queue_from"], entry["error_class"]) == ("ready", "Unreachable")
        assert "powered off" in entry["error_message"]
    finally:
        flaky.stop()


def test_auto_purge_retires_stale_ready_vms_and_its_dry_run_only_logs(tmp_path, caplog):
    stale = {"purge_enabled": True, "purge_interval": 1, "max_ready_age": 1, "ready_ttl": 600}
    dry = run(tmp_path / "dry", {**stale, "purge_dry_run": True})
    try:
        with caplog.at_level(logging.INFO, logger="vmpooler"):
            wait_until(lambda: "[purge][dry-run]" in caplog.text, 30, "the dry run's line")
        assert letters(dry) == []
    finally:
        dry.stop()
    real = run(tmp_path / "real", stale)
    try:
        entry = wait_until(lambda: letters(real), 30, "a purged VM")[0]
        assert (entry["queue_from"], entry["error_class"]) == ("ready", "Purge")
        assert entry["error_message"].startswith("Stale ready VM (age: ")
    finally:
        real.stop()


def test_dlq_enabled_false_keeps_no_dead_letters(tmp_path):
    service = run(tmp_path, {"dlq_enabled": False, "clone_attempts": 1}, {"createvm_fail_percent": 100})
    try:
        wait_until(lambda: service.get("/status").json()["pools"]["debian"].get("waiting"), 30, "a failed clone")
        assert service.client.get("/api/v1/dlq").json() == {"ok": True, "enabled": False, "count": 0, "dlq": []}
    finally:
        service.stop()


def test_bad_queries_are_400_and_an_unknown_pool_404(tmp_path):
    service = run(tmp_path)
    try:
        assert service.client.get("/api/v1/dlq?queue=nowhere").status == 400
        assert service.client.get("/api/v1/dlq?limit=0").status == 400
        assert service.client.get("/api/v1/dlq?limit=many").status == 400
        assert service.client.get("/api/v1/dlq?pool=nope").status == 404
    finally:
        service.stop()


def test_the_queue_is_trimmed_by_age_and_by_count(db):
    now = utcnow()
    with db.write() as conn:
        for minutes in range(10):
            vm = type("VM", (), {"id": minutes, "name": f"vm{minutes}", "pool": "p", "clone_attempts": 1})
            dead_letters.add(conn, vm, DeadLetter(DeadLetterQueue.CLONE, "E", "boom"),
                             now - datetime.timedelta(hours=minutes))
    assert dead_letters.trim(db, now, ttl_hours=5.5, max_entries=100) == 4  # 6..9 hours old
    assert dead_letters.trim(db, now, ttl_hours=100, max_entries=2) == 4
    assert [entry.vm for entry in dead_letters.entries(db)] == ["vm0", "vm1"]  # the newest kept


def test_queue_health_follows_the_3_8_1_rules():
    limits = queue_health.thresholds({"pending_queue_max": 2, "dlq_max_warning": 3})
    calm = {"a": queue_health.PoolQueues(pending=2, ready=1)}
    assert queue_health.verdict(calm, 0, limits).status == queue_health.Health.HEALTHY
    busy = {"a": queue_health.PoolQueues(pending=3)}
    assert queue_health.verdict(busy, 0, limits).status == queue_health.Health.DEGRADED
    flooded = {"a": queue_health.PoolQueues(pending=5)}
    assert queue_health.verdict(flooded, 0, limits).status == queue_health.Health.UNHEALTHY
    failing = queue_health.verdict(calm, 4, limits)
    assert failing.status == queue_health.Health.DEGRADED and "4 dead letters" in failing.reasons[0]
    stuck = {"a": queue_health.PoolQueues(pending=1, stuck=11)}
    assert queue_health.verdict(stuck, 0, limits).status == queue_health.Health.DEGRADED


def test_queue_health_is_shown_by_the_healthcheck_and_the_metrics(tmp_path):
    service = run(tmp_path, {"health_thresholds": {"ready_queue_max": 1}}, prometheus={"prefix": "vmpooler"},
                  pools=[{"name": "debian", "template": "debian", "size": 2}])
    try:
        wait_until(lambda: service.get("/status").json()["pools"]["debian"]["ready"] == 2, 30, "two ready VMs")
        details = service.client.get("/healthcheck?details").json()
        health = details["queue_health"]
        assert health["status"] == "degraded" and health["queues"]["debian"]["ready"] == 2
        assert health["reasons"] == ["debian: 2 ready (ready_queue_max 1)"]
        assert service.client.get("/healthcheck").json() == {"ok": True}  # never a 503 for queue health
        scraped = service.client.get("/prometheus").text
        assert 'vmpooler_health_status{' in scraped and "} 1.0" in scraped.split("vmpooler_health_status{")[1]
    finally:
        service.stop()


def test_timeout_notification_warns_once_before_the_timeout(tmp_path, caplog):
    pools = [{"name": "slow", "template": "slow", "size": 1, "timeout": 0.02, "timeout_notification": 0.015}]
    with caplog.at_level(logging.WARNING, logger="vmpooler.manager"):
        service = run(tmp_path, {"timeout": 15}, {"boot_max_time": 60}, pools=pools)
        try:
            wait_until(lambda: letters(service), 30, "the timeout")
        finally:
            service.stop()
    warned = [r.getMessage() for r in caplog.records if "unless it becomes ready" in r.getMessage()]
    names = {line.split(":")[0] for line in warned}
    assert warned and len(warned) == len(names)  # one warning per VM
    assert "it is given up at 0.02 minutes" in warned[0]


def test_vmpooler_dlq_lists_the_dead_letters(tmp_path):
    service = run(tmp_path, {"clone_attempts": 1}, {"createvm_fail_percent": 100})
    try:
        wait_until(lambda: letters(service), 30, "a dead letter")
    finally:
        service.stop()
    config = tmp_path / "vmpooler.yaml"
    config.write_text(f":database:\n  url: sqlite:///{tmp_path / 'vmpooler.db'}\n:pools:\n"
                      "  - name: debian\n    template: debian\n    size: 1\n")
    listed = vmpooler("dlq", "--config", str(config), "--pool", "debian")
    assert listed.returncode == 0, listed.stderr
    assert " debian " in listed.stdout and " clone  TransientError: " in listed.stdout
    assert vmpooler("dlq", "--config", str(config), "--pool", "nope").returncode == 1


@pytest.mark.parametrize("key", ["dlq_enabled", "purge_enabled", "health_check_enabled"])
def test_the_switches_must_be_booleans(key, tmp_path):
    with pytest.raises(Exception, match=key):
        service_config(tmp_path, POOL, {key: "sometimes"})
