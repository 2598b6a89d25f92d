"""Scenario 7: the dashboard's JSON routes at 10,000 VMs, with the histories rebuilt from an hour
of heavy churn in the event log (and a week of older events the query must not read)."""
from __future__ import annotations

import datetime
import random

from benchmarks.harness import Row, Server, bulk_insert, median, seed_pools, timed_requests, utcnow, write_config
from benchmarks.scenarios import POOLS, Run, _sql_ms, dummy_pool

#: (from, to) of the events seeded: every kind of change the service records
CHANGES = [(None, "pending"), ("pending", "pending"), ("pending", "ready"), ("ready", "running"),
           ("running", "completed"), ("ready", "completed"), ("completed", "destroyed")]
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime in SQLite


def _seed(db_path: str, total: int, hour_events: int, older_events: int) -> None:
    from vmpooler.db.database import Database
    from vmpooler.db.models import vm_events

    per_pool = total // POOLS
    seed_pools(db_path, {f"pool{p:03d}": {"ready": per_pool - per_pool // 5, "running": per_pool // 5}
                         for p in range(POOLS)})
    rng, now = random.Random(7), utcnow()
    database = Database(f"sqlite:///{db_path}")
    for count, oldest, newest in ((older_events, 7 * 86400, 3600), (hour_events, 3600, 0)):
        rows = []
        # in time order, as the service appends them: the window's rows are the table's last ones
        for n, seconds_ago in enumerate(sorted((rng.uniform(newest, oldest) for _ in range(count)), reverse=True)):
            pool, (old, new) = rng.randrange(POOLS), rng.choice(CHANGES)
            rows.append(dict(vm_id=n % total + 1, vm_name=f"pool{pool:03d}-{n:06d}", pool=f"pool{pool:03d}",
                             at=now - datetime.timedelta(seconds=seconds_ago), from_state=old, to_state=new,
                             reason="seeded"))
        bulk_insert(database, vm_events, rows, chunk=50000)
    database.dispose()


def _net(state: str) -> str:
    return (f"sum(CASE WHEN to_state = '{state}' AND (from_state IS NULL OR from_state != '{state}') THEN 1 "
            f"WHEN from_state = '{state}' AND to_state != '{state}' THEN -1 ELSE 0 END)")


#: the history's grouped query, written by hand for sqlite3
FLOOR_SQL = (f"SELECT pool, (CAST(strftime('%s', at) AS INTEGER) - ?) / 60 AS step, {_net('ready')}, "
             f"{_net('running')} FROM vm_events WHERE at >= ? AND (to_state IN ('ready', 'running') OR "
             "from_state IN ('ready', 'running')) GROUP BY pool, step")


def _floor_ms(db_path: str) -> float:
    start = (utcnow() - datetime.timedelta(hours=1)).replace(microsecond=0)
    epoch = int((start - datetime.datetime(1970, 1, 1)).total_seconds())
    return _sql_ms(db_path, FLOOR_SQL, (epoch, start.strftime(SQLITE_TIME)), repeat=7)


def dashboard(run: Run) -> list:
    total, hour_events, older = 10000, run.pick(100_000, 20_000), run.pick(500_000, 50_000)
    db = run.workspace.file("dashboard.db")
    _seed(db, total, hour_events, older)
    per_pool = total // POOLS
    pools = [dummy_pool(f"pool{p:03d}", per_pool - per_pool // 5) for p in range(POOLS)]
    settings = {"vm_checktime": 60, "check_loop_delay_min": 3600, "reconcile_interval": 3600}
    config = write_config(run.workspace.file("dashboard.yaml"), db, pools, settings)
    rows = []
    floor = _floor_ms(db)
    note = f"{total:,} VMs in {POOLS} pools; {hour_events:,} events in the past hour, {older:,} older"
    with Server(run.workspace, "vmpooler", config, name="dashboard") as server:
        first = timed_requests(server.port, "/dashboard/stats/vmpooler/pool?history=1", 1, 60)[0]
        rows.append(Row("7 dashboard", "GET pool stats with history, first (scans the hour)", first, "ms", floor,
                        "the grouped query alone, sqlite3", "< 2x floor", first < 2 * floor, note))
        for path, label in (("/dashboard/stats/vmpooler/pool?history=1", "pool stats with history"),
                            ("/dashboard/stats/vmpooler/running?history=1", "running stats with history")):
            latencies = timed_requests(server.port, path, run.pick(30, 10), 20)
            rows.append(Row("7 dashboard", f"GET {label}, then, p50", median(latencies), "ms", None, "",
                            "< 100 ms", median(latencies) < 100, "the hour's changes cached; the last seconds read"))
        plain = timed_requests(server.port, "/dashboard/stats/vmpooler/pool", run.pick(100, 30), 10)
        rows.append(Row("7 dashboard", "GET pool stats (the 5 s refresh), p50", median(plain), "ms", None, "",
                        "< 25 ms", median(plain) < 25, "one grouped count, as /status"))
    return rows
