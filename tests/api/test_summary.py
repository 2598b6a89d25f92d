"""GET /summary[/<section>[/<key>]]."""
import datetime

import pytest
from sqlalchemy import insert, text

from tests.api.conftest import assert_error
from vmpooler.db import stats as stat_store
from vmpooler.db.models import durations
from vmpooler.db.database import utcnow
from vmpooler.db.stats import record_duration

TODAY = utcnow().date()


def day(offset=0):
    return (TODAY + datetime.timedelta(days=offset)).isoformat()


def seed(api):
    """Boot and clone samples over two days and two pools, and tags."""
    for tags in ({"department": "engineering", "user": "jdoe"}, {"department": "IT"}, {"department": "IT"}):
        name = api.add(state="running")
        assert api.put(f"/api/v1/vm/{name}", {"tags": tags}).status == 200
    with api.db.write() as conn:
        conn.execute(text("DELETE FROM durations"))  # the seeded VMs' own samples
        conn.execute(text("DELETE FROM duration_days"))
        for kind, pool, seconds, when in [("boot", "debian-7-i386", 100.0, day(-1)),
                                          ("boot", "debian-7-i386", 120.0, day(-1)),
                                          ("boot", "debian-7-x86_64", 83.0, day(-1)),
                                          ("boot", "debian-7-i386", 50.0, day()),
                                          ("clone", "debian-7-i386", 4.0, day())]:
            record_duration(conn, kind, pool, "x", seconds, datetime.datetime.fromisoformat(when))


def test_today_by_default(api):
    seed(api)
    body = api.get("/api/v1/summary").json()
    assert set(body) == {"boot", "clone", "tag", "daily"}
    assert [d["date"] for d in body["daily"]] == [day()]
    assert body["boot"]["duration"]["total"] == 50.0 and body["boot"]["count"]["total"] == 1
    assert body["tag"] == {"department": {"engineering": 1, "IT": 2, "total": 3}, "user": {"jdoe": 1, "total": 1}}


def test_range_overall_and_daily(api):
    seed(api)
    body = api.get(f"/api/v1/summary?from={day(-2)}&to={day()}").json()
    assert [d["date"] for d in body["daily"]] == [day(-2), day(-1), day()]
    empty = body["daily"][0]
    assert empty["boot"] == {"duration": {"average": 0, "min": 0, "max": 0, "total": 0}, "count": {"total": 0}}
    assert empty["tag"] == {}
    yesterday = body["daily"][1]["boot"]
    assert yesterday["duration"]["average"] == 101.0 and yesterday["duration"]["min"] == 83.0
    assert yesterday["duration"]["max"] == 120.0 and yesterday["count"]["total"] == 3
    assert yesterday["duration"]["pool"]["debian-7-i386"] == {"average": 110.0, "min": 100.0, "max": 120.0,
                                                               "total": 220.0}
    assert yesterday["count"]["pool"] == {"debian-7-i386": {"total": 2}, "debian-7-x86_64": {"total": 1}}
    boot = body["boot"]
    assert {k: boot["duration"][k] for k in ("average", "min", "max", "total")} == {
        "average": 88.2, "min": 50.0, "max": 120.0, "total": 353.0}
    assert {k: boot["count"][k] for k in ("average", "min", "max", "total")} == {
        "average": 1.3, "min": 0, "max": 3, "total": 4}
    assert body["boot"]["count"]["pool"]["debian-7-i386"] == {"total": 3}


def test_sections(api):
    seed(api)
    boot = api.get("/api/v1/summary/boot").json()
    assert set(boot) == {"boot", "daily"} and set(boot["daily"][0]) == {"date", "boot"}
    duration = api.get(f"/summary/clone/duration?from={day(-1)}").json()
    assert set(duration["clone"]) == {"duration"} and set(duration["daily"][1]["clone"]) == {"duration"}
    tag = api.get("/api/v1/summary/tag/department").json()
    assert tag["tag"] == {"department": {"engineering": 1, "IT": 2, "total": 3}}
    assert api.get("/api/v1/summary/tag").json()["tag"]["user"] == {"jdoe": 1, "total": 1}
    for path in ("/api/v1/summary/nope", "/api/v1/summary/boot/nope", "/api/v1/summary/tag/a/b"):
        response = api.get(path)
        assert response.status == 404 and response.json()["ok"] is False


@pytest.mark.parametrize("query, message", [
    ("from=2015-3-1", "Invalid date format"),
    ("from=yesterday", "Invalid date format"),
    ("from=2015-13-01", "Invalid date"),
    ("from=2015-02-30", "Invalid date"),
    ("to=2015-03-10&from=2015-03-11", "'to' cannot come before 'from'"),
    (f"from={day(1)}&to={day(2)}", "'from' must be in the past"),
    (f"from={day(1)}", "'to' cannot come before 'from'"),
    ("from=2000-01-01", "too long"),
    ("from=0001-01-01&to=9999-12-31", "too long"),
])
def test_bad_dates(api, query, message):
    body = assert_error(api.get(f"/api/v1/summary?{query}"), 400)
    assert message in body["error"]


def test_future_to_is_allowed(api):
    assert len(api.get(f"/api/v1/summary?from={day(-1)}&to={day(1)}").json()["daily"]) == 3


SAMPLES = 30_000


def test_aggregated_by_the_database(api, monkeypatch):
    """Samples over a year are aggregated by the database: Python sees one row per day, kind and
    pool, never the samples. (Its speed over 1,000,000 samples is measured by benchmarks/.)"""
    start, now = TODAY - datetime.timedelta(days=365), utcnow()
    samples = [{"kind": ("boot", "clone")[i % 2], "pool": f"pool{i % 20}", "vm_name": "vm", "seconds": i % 300 + 0.5,
                "at": now, "day": (start + datetime.timedelta(days=i % 366)).isoformat()} for i in range(SAMPLES)]
    with api.db.write() as conn:
        conn.execute(insert(durations), samples)
        conn.execute(text(  # the daily totals the service keeps beside each sample
            "INSERT INTO duration_days (kind, day, pool, count, total, low, high) SELECT kind, day, pool, count(*), "
            "sum(seconds), min(seconds), max(seconds) FROM durations GROUP BY kind, day, pool"))
    fetched = []
    original = stat_store.duration_stats
    monkeypatch.setattr(stat_store, "duration_stats", lambda *a: fetched.extend(original(*a)) or fetched)
    body = api.get(f"/api/v1/summary?from={start.isoformat()}").json()
    assert body["boot"]["count"]["total"] + body["clone"]["count"]["total"] == SAMPLES
    assert body["boot"]["duration"]["max"] == 298.5 and len(body["daily"]) == 366
    assert len(fetched) <= 366 * 2 * 20
