"""GET /status, /poolstat and /totalrunning."""
import datetime
import re

import pytest
from sqlalchemy import event

from tests.api.conftest import ALIAS_POOLS, vm_row
from vmpooler.db import stats as stat_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.db.models import vms
from vmpooler.db.stats import record_duration

RUBY_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \+0000$")


def test_status_shape_and_counts(start_api):
    api = start_api(pools=ALIAS_POOLS)
    stat_store.sync_pools(api.db, api.config.pools, utcnow())
    api.add(state="pending")  # cloning
    booting = api.add(state="pending")
    vm_store.cloned(api.db, vm_row(api, booting), utcnow())
    for _ in range(3):
        api.add("debian-7-x86_64")
    api.add("centos-6-x86_64", state="running")
    done = api.add("centos-6-x86_64", state="running")
    api.delete(f"/api/v1/vm/{done}")
    body = api.get("/api/v1/status").json()
    assert list(body) == ["boot", "capacity", "clone", "pools", "providers", "queue", "status"]
    assert body["capacity"] == {"current": 3, "total": 10, "percent": 30.0}
    assert body["queue"] == {"pending": 2, "cloning": 1, "booting": 1, "ready": 3, "running": 1, "completed": 1,
                             "total": 7}
    pools = body["pools"]
    assert pools["debian-7-i386"] == {"ready": 0, "running": 0, "pending": 2, "max": 5, "lastBoot": "",
                                      "alias": ["debian", "linux"]}
    assert pools["debian-7-x86_64"]["ready"] == 3 and RUBY_TIME.match(pools["debian-7-x86_64"]["lastBoot"])
    assert pools["centos-6-x86_64"]["alias"] == "centos"  # as configured: a string
    assert body["clone"]["count"] == {"total": 6} and body["boot"]["count"] == {"total": 5}
    assert set(body["boot"]["duration"]) == {"average", "min", "max", "total"}
    status = body["status"]
    assert status["ok"] is False and status["message"] == "Found 2 empty pools."
    assert status["empty"] == ["debian-7-i386", "centos-6-x86_64"] and status["uptime"] >= 0


def test_durations_today_only(api):
    now = utcnow()
    with api.db.write() as conn:
        today = now.strftime("%Y-%m-%d")
        for seconds, day in [(2.5, today), (7.5, today), (99, "2000-01-01")]:
            record_duration(conn, "clone", "debian-7-i386", "x", seconds,
                            datetime.datetime.fromisoformat(day) if day != today else now)
    clone = api.get("/api/v1/status").json()["clone"]
    assert clone == {"duration": {"average": 5.0, "min": 2.5, "max": 7.5, "total": 10.0}, "count": {"total": 2}}
    assert api.get("/status").json()["boot"] == {"duration": {"average": 0, "min": 0, "max": 0, "total": 0},
                                                 "count": {"total": 0}}


def test_all_pools_ready_is_ok(start_api):
    api = start_api(pools=[{"name": "p", "template": "t", "size": 1}, {"name": "zero", "template": "t", "size": 0}])
    api.add("p")
    status = api.get("/api/v1/status").json()["status"]
    assert status["ok"] is True and status["message"] == "Battle station fully armed and operational."
    assert "empty" not in status


@pytest.mark.parametrize("query, sections", [
    ("", ["boot", "capacity", "clone", "pools", "providers", "queue", "status"]),
    ("?view", ["boot", "capacity", "clone", "pools", "providers", "queue", "status"]),
    ("?view=", ["status"]),
    ("?view=queue,nope", ["queue", "status"]),
    ("?view=pools,capacity", ["capacity", "pools", "status"]),
    ("?view=providers", ["providers", "status"]),
])
def test_view(api, query, sections):
    assert list(api.get("/api/v1/status" + query).json()) == sections


def test_empty_check_only_with_pools_in_view(api):
    assert api.get("/api/v1/status?view=queue").json()["status"]["ok"] is True
    assert api.get("/api/v1/status?view=pools").json()["status"]["ok"] is False


def test_providers_section(api):
    api.context.provider_health = lambda: {"dummy": {"ok": True}}
    assert api.get("/api/v1/status").json()["providers"] == {"dummy": {"ok": True}}


def count_selects(api, path):
    statements = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(api.db.engine, "before_cursor_execute", record)
    try:
        assert api.get(path).status == 200
    finally:
        event.remove(api.db.engine, "before_cursor_execute", record)
    return len(statements)


def test_fixed_number_of_queries(start_api):
    few = start_api(pools=[{"name": f"p{i}", "template": "t", "size": 1} for i in range(2)])
    many = start_api(pools=[{"name": f"q{i}", "template": "t", "size": 1} for i in range(60)])
    for i in range(60):
        many.add(f"q{i}")
    for path in ("/api/v1/status", "/api/v1/poolstat?pool=" + ",".join(f"q{i}" for i in range(60)),
                 "/api/v1/totalrunning"):
        # /status: counts, durations, boots, overrides (the lease, the 5th, needs a Leadership)
        assert count_selects(few, path) == count_selects(many, path) <= 4


def test_status_cache(start_api):
    api = start_api(settings={"status_cache_seconds": 60})
    assert api.get("/api/v1/status").json()["capacity"]["current"] == 0
    api.add()  # a change of this process: what was cached is stale
    assert api.get("/api/v1/status").json()["capacity"]["current"] == 1
    reads = count_selects(api, "/api/v1/status")
    assert reads == 0  # nothing changed since: the cached answer, no query
    with api.db.engine.begin() as conn:  # a change made behind the process's back (not announced) ...
        conn.execute(vms.update().values(state="running"))
    assert api.get("/api/v1/status").json()["capacity"]["current"] == 1  # ... leaves the cache as it was
    uncached = start_api()
    uncached.add()
    assert uncached.get("/api/v1/status").json()["capacity"]["current"] == 1  # the running one is not ready


def test_a_cached_status_is_never_older_than_this_process_s_last_change(start_api):
    """A script that empties a pool and asks /status at once must see it empty (a cached "full"
    answer made it check out into a 503)."""
    api = start_api(pools=ALIAS_POOLS, settings={"status_cache_seconds": 60})
    for _ in range(2):
        api.add("centos-6-x86_64")
    assert api.get("/api/v1/status").json()["pools"]["centos-6-x86_64"]["ready"] == 2
    assert api.post("/api/v1/vm/centos-6-x86_64+centos-6-x86_64").status == 200
    status = api.get("/api/v1/status").json()
    assert status["pools"]["centos-6-x86_64"]["ready"] == 0
    assert "centos-6-x86_64" in status["status"]["empty"]


def test_poolstat(start_api):
    api = start_api(pools=ALIAS_POOLS)
    api.add("centos-6-x86_64")
    body = api.get("/api/v1/poolstat?pool=centos,debian-7-x86_64,nope").json()
    assert body == {"pools": {"debian-7-x86_64": {"max": 3, "alias": ["linux"], "ready": 0},
                              "centos-6-x86_64": {"max": 2, "alias": "centos", "ready": 1}}}
    assert api.get("/api/v1/poolstat").json() == {"pools": {}}
    assert set(api.get("/api/v1/poolstat?pool=linux").json()["pools"]) == {"debian-7-i386", "debian-7-x86_64"}


def test_totalrunning(api):
    api.add(state="running"), api.add("debian-7-x86_64", state="running"), api.add()
    assert api.get("/api/v1/totalrunning").json() == {"running": 2}
