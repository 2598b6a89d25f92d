"""Prometheus metrics: the original's names, types, labels and buckets, their values against /status
after real checkouts and clones on the dummy provider, the exposition read by the official parser,
the configurable endpoint and prefixes, and labels that never carry a hostname or a token."""
import os
import re
import threading
import time

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import inspect, text

from tests.api.conftest import USERS_AUTH, scrape, values
from tests.manager.helpers import FAST
from tests.conftest import make_config
from tests.service import InProcessService
from vmpooler.api.metrics import VM_OPERATIONS, collapse_path
from vmpooler.api.routes import rules
from vmpooler.config import ConfigError
from vmpooler.db.database import Database, StoreUnavailable
from vmpooler.metrics import CLONE_BUCKETS, DISABLED, HTTP_BUCKETS, READY_BUCKETS, Metrics
from vmpooler.model import BreakerState

POOLS = [{"name": "debian-7-i386", "template": "debian-7-i386", "size": 3, "alias": ["debian"]},
         {"name": "centos-8", "template": "centos-8", "size": 2}]


def service(db, prometheus=None, pools=POOLS, dummy=None, settings=None, **sections):
    if prometheus is not None:
        sections["prometheus"] = prometheus
    config = make_config(pools=pools, settings={**FAST, **(settings or {})}, providers={"dummy": dict(dummy or {})},
                         database={"url": db.url}, **sections)
    return InProcessService(config)


def wait_until(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def status(svc):
    return svc.get("/status").json()


def full(svc):
    body = status(svc)
    return all(body["pools"][p["name"]]["ready"] == p["size"] for p in POOLS) and body


def stable_status(svc):
    """/status twice with the same pools: nothing moved in between (the scrape ran in between)."""
    def attempt():
        before = full(svc)
        if not before:
            return None
        scraped = scrape(svc.client)
        after = status(svc)
        return (before, scraped) if after["pools"] == before["pools"] and after["clone"] == before["clone"] else None
    return wait_until(attempt, what="a quiet moment with full pools")


def test_values_agree_with_status_after_real_checkouts_and_clones(db):
    svc = service(db, {"prefix": "staging"})
    try:
        wait_until(lambda: full(svc), what="full pools")
        one = svc.post("/vm/debian-7-i386").json()["debian-7-i386"]["hostname"]
        batch = svc.client.post("/api/v1/vm", {"centos-8": 2, "debian": 1}).json()
        assert batch["ok"] and len(batch["centos-8"]["hostname"]) == 2
        assert svc.post("/vm/no-such-pool").status == 404  # invalid
        assert svc.client.post("/api/v1/vm", {"centos-8": 10}).status == 503  # empty: 2 VMs at most
        assert svc.delete(f"/vm/{one}").json()["ok"]
        body, (exposition, families) = stable_status(svc)

        for pool in POOLS:
            name = pool["name"]
            assert values(families, "vmpooler_ready")[name] == body["pools"][name]["ready"] == pool["size"]
            assert values(families, "vmpooler_running")[name] == body["pools"][name]["running"]
        assert values(families, "vmpooler_running") == {"debian-7-i386": 1, "centos-8": 2}
        # +1 per VM handed out, by the pool it came from (the alias "debian" is debian-7-i386)
        assert values(families, "vmpooler_checkout_success") == {"debian-7-i386": 2, "centos-8": 2}
        assert values(families, "vmpooler_checkout_empty") == {"centos-8": 1}
        assert values(families, "vmpooler_checkout_invalid") == {"unknown": 1}
        assert list(values(families, "vmpooler_delete_success").values()) == [1]
        assert list(values(families, "vmpooler_delete_failed").values()) == [0]
        # every clone and boot of the day happened in this service: the histograms saw each one
        clones = values(families, "vmpooler_clone", "vmpooler_clone_count")
        boots = values(families, "vmpooler_time_to_ready_state", "vmpooler_time_to_ready_state_count")
        assert sum(clones.values()) == body["clone"]["count"]["total"] >= 3 + 2 + 4
        assert sum(boots.values()) == body["boot"]["count"]["total"] == sum(clones.values())
        clone_sum = sum(values(families, "vmpooler_clone", "vmpooler_clone_sum").values())
        assert clone_sum == pytest.approx(body["clone"]["duration"]["total"], abs=0.01)
        # every sample of every family carries the instance label
        for family in families.values():
            for sample in family.samples:
                assert sample.labels.get("vmpooler_instance") == "staging", sample
    finally:
        svc.stop()


def test_exposition_has_the_originals_names_types_and_buckets(db):
    svc = service(db, {})
    try:
        wait_until(lambda: full(svc), what="full pools")
        svc.post("/vm/centos-8")
        exposition, families = scrape(svc.client)
    finally:
        svc.stop()
    lines = exposition.splitlines()
    # the original's counters have no _total (its Ruby client added none); its middleware's do
    assert "# TYPE vmpooler_checkout_success counter" in lines
    assert any(line.startswith('vmpooler_checkout_success{') for line in lines)
    assert "# TYPE vmpooler_http_requests_total counter" in lines
    assert "# TYPE vmpooler_ready gauge" in lines and "# TYPE vmpooler_running gauge" in lines
    for name, buckets in (("vmpooler_clone", CLONE_BUCKETS), ("vmpooler_time_to_ready_state", READY_BUCKETS),
                          ("vmpooler_http_request_duration_seconds", HTTP_BUCKETS)):
        assert families[name].type == "histogram"
        edges = {s.labels["le"] for s in families[name].samples if s.name == name + "_bucket"}
        assert edges == {repr(float(b)) for b in buckets} | {"+Inf"}, name
    assert not any("_created" in line for line in lines)  # OpenMetrics only; the original has none
    assert families["vmpooler_checkout_success"].type == "counter"
    assert values(families, "vmpooler_checkout_success")["centos-8"] == 1
    assert set(families["vmpooler_http_requests"].samples[0].labels) == {"code", "method", "path",
                                                                         "vmpooler_instance"}
    assert families["vmpooler_provider_circuit_breaker_state"].type == "gauge"
    assert values(families, "vmpooler_provider_circuit_breaker_state", provider="dummy", state="closed")
    breaker_samples = families["vmpooler_provider_circuit_breaker_state"].samples
    assert [sample.labels["state"] for sample in breaker_samples] == [state.value for state in BreakerState]
    assert families["vmpooler_manager_pass_duration_seconds"].type == "histogram"
    assert families["vmpooler_database_errors"].type == "counter"
    # the example alert rules of docs/operations.md name only what is exposed
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M))  # also those without samples yet
    exposed = set(types) | {name + suffix for name, kind in types.items() if kind == "histogram"
                            for suffix in ("_bucket", "_count", "_sum")}
    for rule in _documented_alert_rules():
        for name in re.findall(r"\b(vmpooler_[a-z_]+)", rule["expr"]):
            assert name in exposed, f"{rule['alert']}: {name} is not exposed"


def _documented_alert_rules() -> list:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "docs", "operations.md"), encoding="utf-8") as handle:
        blocks = re.findall(r"```yaml\n(groups:.*?)```", handle.read(), re.S)
    assert len(blocks) == 1, "docs/operations.md: one block of example alert rules"
    rules = [rule for group in yaml.safe_load(blocks[0])["groups"] for rule in group["rules"]]
    assert len(rules) >= 5
    return rules


def test_a_changed_endpoint_and_prefixes_move_the_metrics(db):
    svc = service(db, {"prometheus_endpoint": "/metrics", "prometheus_prefix": "pooler", "prefix": "prod-a"})
    try:
        wait_until(lambda: full(svc), what="full pools")
        exposition, families = scrape(svc.client, "/metrics")
        assert values(families, "pooler_ready", vmpooler_instance="prod-a")["centos-8"] == 2
        assert not any(name.startswith("vmpooler") for name in families)
        missing = svc.client.get("/prometheus")
        assert missing.status == 404 and missing.json() == {"ok": False}
    finally:
        svc.stop()


def test_without_a_prometheus_section_nothing_is_served_or_kept(db):
    svc = service(db)
    try:
        assert svc.service.metrics is DISABLED and svc.service.manager.metrics is DISABLED
        missing = svc.client.get("/prometheus")
        assert missing.status == 404 and missing.json() == {"ok": False}
    finally:
        svc.stop()


@pytest.mark.parametrize("path, collapsed", [
    ("/api/v1/vm/debian-7-i386", "/api/v1/vm"),
    ("/api/v1/vm/abcdefghijklmno/snapshot/1234", "/api/v1/vm"),
    ("/vm/debian-7-i386+centos-8", "/vm"),
    ("/api/v1/token/0123456789abcdef", "/api/v1/token"),
    ("/api/v1/ondemandvm/6a8b7a2c-1d2e", "/api/v1/ondemandvm"),
    ("/api/v2/ondemand/6a8b7a2c", "/api/v2/ondemand"),
    ("/dashboard/lib/bootstrap.min.css", "/dashboard/lib"),
    ("/img/logo.png", "/img"),
    ("/api/v1/vm", "/api/v1/vm"),
    ("/api/v1/vm/", "/api/v1/vm/"),  # as the original: /vm/.+ needs a character after the slash
    ("/api/v1/status", "/api/v1/status"),
    ("/dashboard/stats/vmpooler/pool", "/dashboard/stats/vmpooler/pool"),
])
def test_paths_are_collapsed_as_the_original_collapses_them(path, collapsed):
    assert collapse_path(path) == collapsed


def test_labels_never_hold_hostnames_or_tokens(db):
    svc = service(db, {}, auth=USERS_AUTH)
    client = svc.client
    try:
        wait_until(lambda: full(svc), what="full pools")
        token = client.post("/api/v1/token", user="jdoe").json()["token"]
        host = client.post("/api/v1/vm/debian-7-i386", token=token).json()["debian-7-i386"]["hostname"]
        client.get(f"/api/v1/vm/{host}")
        client.put(f"/api/v1/vm/{host}", {"lifetime": 2}, token=token)
        client.post(f"/api/v1/vm/{host}/snapshot", token=token)
        client.get(f"/api/v1/token/{token}", user="jdoe")
        client.post(f"/api/v1/vm/{token}")  # a token sent as a pool name
        client.get(f"/api/v1/{host}")  # no such route
        client.get(f"/{token}/{host}")
        client.get(f"/api/v1/summary/{token}")  # a route, but no such section: 404
        client.get(f"/api/v1/vm/{token}")  # a route, no such VM: 404, its path cut as the original cuts it
        client.request("FROBNICATE", f"/vm/{host}")
        client.delete(f"/vm/{host}", token=token)
        client.delete(f"/api/v1/token/{token}", user="jdoe")
        exposition, families = scrape(client)
    finally:
        svc.stop()
    assert host not in exposition and token not in exposition and token[:8] not in exposition
    requests = values(families, "vmpooler_http_requests", "vmpooler_http_requests_total")
    paths = {dict(labels)["path"] for labels in requests}
    assert paths <= {"/api/v1/vm", "/api/v1/token", "/vm", "/prometheus", "/api/v1/status", "unmatched"}, paths
    by_labels = {(d["method"], d["path"], d["code"]): v for d, v in ((dict(k), v) for k, v in requests.items())}
    assert by_labels[("post", "/api/v1/vm", "200")] == 1
    assert by_labels[("delete", "/vm", "200")] == 1
    assert by_labels[("other", "/vm", "405")] == 1
    assert by_labels[("get", "unmatched", "404")] == 3
    assert by_labels[("get", "/api/v1/vm", "404")] == 1
    operations = values(families, "vmpooler_http_requests_vm", "vmpooler_http_requests_vm_total")
    seen = {(d["method"], d["subpath"], d["operation"]) for d in (dict(k) for k in operations)}
    assert {("get", "vm", "template"), ("get", "vm", "hostname"), ("put", "vm", "modify"),
            ("post", "vm", "snapshot"), ("delete", "vm", "hostname")} <= seen


def test_provider_errors_latency_and_the_open_breaker_are_exposed(db):
    svc = service(db, {}, pools=[{"name": "broken", "template": "t", "size": 2}],
                  dummy={"createvm_fail_percent": 100},
                  settings={"circuit_breaker_failure_threshold": 3, "circuit_breaker_timeout": 600})

    def opened():
        families = scrape(svc.client)[1]
        state = values(families, "vmpooler_provider_circuit_breaker_state", provider="dummy", state="open")
        return families if list(state.values()) == [1] else None

    try:
        families = wait_until(opened, what="the breaker to open")
    finally:
        svc.stop()
    errors = values(families, "vmpooler_provider_errors", "vmpooler_provider_errors_total")
    failed = {dict(k)["operation"]: v for k, v in errors.items() if dict(k)["error"] == "TransientError"}
    assert failed["create_vm"] >= 3
    calls = values(families, "vmpooler_provider_call_duration_seconds",
                   "vmpooler_provider_call_duration_seconds_count")
    assert {dict(k)["operation"]: v for k, v in calls.items()}["create_vm"] >= 3
    assert values(families, "vmpooler_provider_circuit_breaker_state", provider="dummy", state="closed")
    passes = values(families, "vmpooler_manager_pass_duration_seconds", "vmpooler_manager_pass_duration_seconds_count")
    assert list(passes.values())[0] >= 1
    assert values(families, "vmpooler_ready") == {"broken": 0}


def test_timeouts_destroys_and_handler_faults_are_counted(db, monkeypatch):
    from vmpooler.api.status import StatusHandler

    # VMs that take up to 30 s to boot in a pool whose timeout is 0.12 s: given up, then destroyed
    svc = service(db, {}, pools=[{"name": "slow", "template": "t", "size": 1, "timeout": 0.002}],
                  dummy={"boot_max_time": 30})

    def observed(family, sample):
        found = values(scrape(svc.client)[1], family, sample)
        return {labels if isinstance(labels, str) else dict(labels)["template_name"]: value
                for labels, value in found.items()}

    try:
        assert set(wait_until(lambda: observed("vmpooler_errors_markedasfailed", None), what="a VM given up")) == {
            "slow"}
        assert wait_until(lambda: observed("vmpooler_destroy", "vmpooler_destroy_count"), what="a destroy")["slow"] >= 1

        def broken(self):
            raise RuntimeError("a bug")

        monkeypatch.setattr(StatusHandler, "get", broken)
        assert svc.get("/status").status == 500
        families = scrape(svc.client)[1]
    finally:
        svc.stop()
    faults = values(families, "vmpooler_http_exceptions", "vmpooler_http_exceptions_total")
    assert {dict(k)["exception"]: v for k, v in faults.items()} == {"RuntimeError": 1}
    requests = values(families, "vmpooler_http_requests", "vmpooler_http_requests_total", code="500")
    assert [dict(k)["path"] for k in requests] == ["/api/v1/status"]


def _metrics(db, **prometheus):
    return Metrics(make_config(pools=POOLS, prometheus=prometheus, database={"url": db.url}), db)


def _parsed(metrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}


def test_database_errors_are_counted(tmp_path):
    path = tmp_path / "locked.db"
    db = Database(f"sqlite:///{path}", busy_timeout_ms=20)
    db.upgrade()
    metrics = _metrics(db)
    import sqlite3
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable):
            with db.write() as conn:
                conn.execute(text("SELECT 1"))
        families = _parsed(metrics)  # reads go on beside the writer (WAL)
        assert values(families, "vmpooler_ready") == {"debian-7-i386": 0, "centos-8": 0}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    families = _parsed(metrics)
    assert list(values(families, "vmpooler_database_errors", "vmpooler_database_errors_total").values()) == [1]
    db.dispose()


def test_ondemand_queue_depth_reads_the_requests_table(db):
    created = not inspect(db.engine).has_table("ondemand_requests")
    if created:  # before the on-demand schema exists: the table as its migration makes it, in short
        with db.write() as conn:
            conn.execute(text("CREATE TABLE ondemand_requests (id INTEGER PRIMARY KEY, request_id VARCHAR(64), "
                              "state VARCHAR(16), created_at TIMESTAMP, state_changed_at TIMESTAMP)"))
    try:
        with db.write() as conn:
            for number, state in enumerate(("pending", "pending", "ready", "failed")):
                conn.execute(text("INSERT INTO ondemand_requests (id, request_id, state, created_at, "
                                  "state_changed_at) VALUES (:n, :r, :s, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                             {"n": number + 1, "r": f"req-{number}", "s": state})
        families = _parsed(_metrics(db))
        assert list(values(families, "vmpooler_ondemand_queue_depth").values()) == [2]
    finally:
        if created:  # not in the models: the db fixture would not drop it
            with db.write() as conn:
                conn.execute(text("DROP TABLE ondemand_requests"))


def test_two_services_in_one_process_keep_their_own_samples(db):
    first, second = _metrics(db, prefix="a"), _metrics(db, prefix="b")
    first.checkout(["centos-8", "centos-8"])
    threads = [threading.Thread(target=second.checkout, args=(["centos-8"],)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert values(_parsed(first), "vmpooler_checkout_success") == {"centos-8": 2}
    assert values(_parsed(second), "vmpooler_checkout_success") == {"centos-8": 5}


@pytest.mark.parametrize("section, problem", [
    ({"prometheus_prefix": "9lives"}, "prometheus.prometheus_prefix"),
    ({"prometheus_prefix": "a-b"}, "prometheus.prometheus_prefix"),
    ({"prometheus_endpoint": "metrics"}, "prometheus.prometheus_endpoint"),
    ({"prometheus_endpoint": "/"}, "prometheus.prometheus_endpoint"),
    ({"prefix": ["a", "b"]}, "prometheus.prefix"),
    ("yes", "prometheus: must be a mapping"),
])
def test_a_bad_prometheus_section_stops_start_up_naming_the_key(section, problem):
    with pytest.raises(ConfigError) as error:
        make_config(prometheus=section)
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems


def test_prometheus_section_defaults_and_an_empty_section():
    config = make_config(prometheus={":prefix:": "staging", "extra": 1})
    assert (config.prometheus.prefix, config.prometheus.prometheus_prefix,
            config.prometheus.prometheus_endpoint) == ("staging", "vmpooler", "/prometheus")
    assert "prometheus.extra is not a known key; ignored" in config.warnings
    assert make_config(prometheus=None).prometheus is None  # ":prometheus:" with nothing under it, as the original
    assert make_config().prometheus is None


def test_the_vm_operation_table_is_keyed_by_the_routed_handler_classes():
    """Keyed by class, not class name: a renamed handler keeps its counts (and a key that is no
    routed handler fails here)."""
    routed = {rule.target for rule in rules()}
    assert VM_OPERATIONS and all(isinstance(handler, type) and handler in routed for handler, _ in VM_OPERATIONS)
    for (handler, method), _operation in VM_OPERATIONS.items():
        assert method.lower() in vars(handler), f"{handler.__name__} has no {method}"
def test_the_ondemand_api_keeps_the_original_s_request_counters(db):
    svc = service(db, {}, settings={"max_ondemand_instances_per_request": 2})
    try:
        assert svc.client.post("/api/v1/ondemandvm", {"debian": 1, "request_id": "r-1"}).status == 201
        assert svc.client.post("/api/v1/ondemandvm", {"centos-8": 1, "request_id": "r-1"}).status == 409
        assert svc.client.post("/api/v1/ondemandvm/centos-8+centos-8+centos-8").status == 403
        assert svc.client.post("/api/v1/ondemandvm", {"nope": 1, "nada": 1}).status == 404
        families = scrape(svc.client)[1]
    finally:
        svc.stop()

    def counted(name):
        return values(families, f"vmpooler_{name}", f"vmpooler_{name}_total")

    assert list(counted("ondemandrequest_generate_success").values()) == [1]
    assert list(counted("ondemandrequest_generate_duplicaterequests").values()) == [1]
    assert counted("ondemandrequest_fail_toomanyrequests") == {"centos-8": 1}
    assert counted("ondemandrequest_fail_invalid") == {"unknown": 2}  # never the names a client sent
