"""The scenarios of the suite, except the vSphere one (vsphere.py). Each takes a ``Run`` and
returns rows of the results table; sizes shrink with ``--quick``."""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import random
import sqlite3
import time
from typing import Optional

from benchmarks import loadgen
from benchmarks.harness import (Profile, Row, Server, Workspace, bulk_insert, cpu_seconds, create_database, median,
                                request, seed_pools, timed_requests, utcnow, vm_rows, wait_until, write_config)
from benchmarks.floors import COUNT_SQL, connect_sqlite, insert_pending, mark_ready

CLIENTS_READ, CLIENTS_WRITE = 16, 8
#: load-generator processes: the most floor requests/s on a 2-core machine (1, 2, 4, 8 tried)
PROCESSES = 4


@dataclasses.dataclass
class Run:
    workspace: Workspace
    quick: bool = False
    profile: bool = False
    profiles: dict = dataclasses.field(default_factory=dict)

    def pick(self, full, quick):
        return quick if self.quick else full

    def profiled(self, server: Server, name: str, seconds: float) -> Profile:
        safe = "".join(c if c.isalnum() else "-" for c in name)
        return Profile(server.pid, seconds, self.workspace.file(f"{safe}.pyspy"), self.profile)

    def keep_profile(self, name: str, profile: Profile) -> None:
        summary = profile.summary()
        if summary:
            self.profiles[name] = summary


def dummy_pool(name: str, size: int) -> dict:
    return {"name": name, "template": name, "size": size, "provider": "dummy"}


def ms(value: float) -> str:
    return f"{value:.2f} ms"


# --- 1: read routes against the HTTP floor ---------------------------------------------------------
def read_routes(run: Run) -> list:
    per_pool = 500
    duration, warmup = run.pick(5.0, 1.2), run.pick(1.0, 0.3)
    db = run.workspace.file("read.db")
    ready = seed_pools(db, {"pool-a": {"ready": per_pool}, "pool-b": {"ready": per_pool}})
    config = write_config(run.workspace.file("read.yaml"), db,
                          [dummy_pool("pool-a", per_pool), dummy_pool("pool-b", per_pool)], {})
    load = lambda port, paths: loadgen.run(port, loadgen.repeat, CLIENTS_READ, duration, warmup, PROCESSES,
                                           paths=paths)
    floors = []
    with Server(run.workspace, "floor") as floor:
        floors.append(load(floor.port, ["/floor"]))
        routes = [("GET /api/v1/vm", ["/api/v1/vm"]),
                  ("GET /api/v1/vm/<host>", [f"/api/v1/vm/{name}" for name in ready]),
                  ("GET /api/v1/status", ["/api/v1/status"])]
        measured = []
        with Server(run.workspace, "vmpooler", config, name="read") as server:
            for label, paths in routes:
                profile = run.profiled(server, f"read {label}", warmup + duration)
                result = load(server.port, paths)
                run.keep_profile(label, profile)
                bad = result.count() - result.count(status=200)
                if bad:
                    raise RuntimeError(f"{label}: {bad} answers were not 200: {result.statuses}")
                measured.append((label, result))
        if not run.quick:  # the floor again, after: the machine's speed drifts
            floors.append(load(floor.port, ["/floor"]))
    floor_rate = sum(f.rate for f in floors) / len(floors)
    floor_note = " / ".join(f"{f.rate:.0f}" for f in floors)
    rows = []
    for label, result in measured:
        rows.append(Row("1 read", f"{label} ({CLIENTS_READ} clients)", result.rate, "req/s", floor_rate,
                        f"bare Tornado handler ({floor_note} req/s)", ">= 60% of floor",
                        result.rate >= 0.6 * floor_rate,
                        f"p50 {ms(result.percentile(50))}, p99 {ms(result.percentile(99))}; floor p50 "
                        f"{ms(floors[0].percentile(50))}, p99 {ms(floors[0].percentile(99))}"))
    return rows


# --- 2: checkout burst -----------------------------------------------------------------------------
def checkout_burst(index, pool, count):
    """``count`` checkouts of one VM of ``pool``; returns the hostnames handed out."""
    hosts = []
    for _ in range(count):
        status, body = yield "POST", f"/api/v1/vm/{pool}", b"", "checkout"
        if status == 200:
            hosts.append(json.loads(body)[pool]["hostname"])
    return hosts


def delete_each(index, names_by_client):
    for name in names_by_client[index]:
        yield "DELETE", f"/api/v1/vm/{name}", None, "delete"


def burst(port: int, pool: str, total: int, generator=loadgen.run, pid: Optional[int] = None) -> tuple:
    """(checkout result, delete result, hostnames): ``total`` checkouts by the 8 clients, then
    each client returns what it got, driven by ``generator``. Asserts that no hostname was handed
    out twice. With ``pid`` (the server's process), each result has the CPU seconds it used."""
    share = total // CLIENTS_WRITE
    started = cpu_seconds(pid) if pid else None
    taken = generator(port, checkout_burst, CLIENTS_WRITE, 120, 0, PROCESSES, pool=pool, count=share)
    hosts = [host for client in taken.returned for host in client]
    assert len(hosts) == len(set(hosts)), f"{len(hosts) - len(set(hosts))} hostnames were handed out twice"
    between = cpu_seconds(pid) if pid else None
    deleted = generator(port, delete_each, CLIENTS_WRITE, 120, 0, PROCESSES, names_by_client=taken.returned)
    if pid:
        taken.cpu_seconds, deleted.cpu_seconds = between - started, cpu_seconds(pid) - between
    return taken, deleted, hosts


def checkout(run: Run) -> list:
    total = run.pick(1000, 400)
    db, floor_db = run.workspace.file("burst.db"), run.workspace.file("burst-floor.db")
    seed_pools(floor_db, {"burst": {"ready": total}})
    seed_pools(db, {"burst": {"ready": total}})
    config = write_config(run.workspace.file("burst.yaml"), db, [dummy_pool("burst", total)], {})
    with Server(run.workspace, "floor", "--db", floor_db) as floor:
        f_taken, f_deleted, _ = burst(floor.port, "burst", total)
    with Server(run.workspace, "vmpooler", config, name="burst") as server:
        profile = run.profiled(server, "burst", 3)
        taken, deleted, hosts = burst(server.port, "burst", total)
        run.keep_profile("checkout burst", profile)
    # Diagnostic: the same burst against the API alone (no manager, so no refill competing).
    seed_pools(db, {"burst": {"ready": total}})
    with Server(run.workspace, "vmpooler", config, "--no-manager", name="burst-api") as server:
        profile = run.profiled(server, "burst-api", 3)
        api_taken, api_deleted, _ = burst(server.port, "burst", total)
        run.keep_profile("checkout burst, API alone", profile)
    floor_what = "Tornado + one sqlite3 transaction"
    return [
        Row("2 checkout", f"checkouts/s, {len(hosts)} VMs, {CLIENTS_WRITE} clients", taken.rate, "/s", f_taken.rate,
            floor_what, ">= 1500/s", taken.rate >= 1500,
            f"503s: {taken.count(status=503)}; no hostname handed out twice (asserted)"),
        Row("2 checkout", "checkout p99", taken.percentile(99), "ms", f_taken.percentile(99), floor_what,
            "< 10 ms", taken.percentile(99) < 10, f"p50 {ms(taken.percentile(50))}"),
        Row("2 checkout", "returns (DELETE)/s", deleted.rate, "/s", f_deleted.rate, floor_what, "", None,
            f"p50 {ms(deleted.percentile(50))}, p99 {ms(deleted.percentile(99))}"),
        Row("2 checkout", "diagnostic: checkouts/s, API alone (no manager)", api_taken.rate, "/s", f_taken.rate,
            floor_what, "", None, f"p50 {ms(api_taken.percentile(50))}, p99 {ms(api_taken.percentile(99))}; returns "
            f"{api_deleted.rate:.0f}/s"),
    ]


# --- 3: checkout cycles with refill -----------------------------------------------------------------
def cycles(index, pool, backoff):
    """Check out, give back, again, until time is up; wait ``backoff`` seconds after a 503."""
    while True:
        status, body = yield "POST", f"/api/v1/vm/{pool}", b"", "checkout"
        if status == 200:
            host = json.loads(body)[pool]["hostname"]
            yield "DELETE", f"/api/v1/vm/{host}", None, "delete"
        elif status == 503:
            yield "SLEEP", backoff
        else:
            raise RuntimeError(f"checkout answered {status}: {body[:200]!r}")


def _ready_count(port: int, pool: str) -> int:
    status, body = request(port, "GET", "/api/v1/status?view=pools")
    return body["pools"][pool]["ready"] if status == 200 else -1


def refill_floor(workspace: Workspace, count: int) -> float:
    """Seconds for the writes a refill needs at the least, done with sqlite3 alone: per VM, one
    transaction inserting it (pending) and one marking it ready, each with its event row."""
    path = workspace.file("refill-floor.db")
    create_database(path).dispose()
    db = connect_sqlite(path)
    now = str(utcnow())
    began = time.perf_counter()
    for n in range(count):
        mark_ready(db, insert_pending(db, f"v{n}", "p", now), f"v{n}", "p", now)
    seconds = time.perf_counter() - began
    db.close()
    return seconds


def refill(run: Run) -> list:
    size, duration = 20, run.pick(8.0, 2.0)
    db, floor_db = run.workspace.file("cycles.db"), run.workspace.file("cycles-floor.db")
    seed_pools(db, {"cycle": {"ready": size}})
    seed_pools(floor_db, {"cycle": {"ready": size}})
    config = write_config(run.workspace.file("cycles.yaml"), db, [dummy_pool("cycle", size)], {})
    params = dict(pool="cycle", backoff=0.005)
    with Server(run.workspace, "floor", "--db", floor_db) as floor:
        f_load = loadgen.run(floor.port, cycles, CLIENTS_WRITE, duration, 0.5, PROCESSES, **params)
    with Server(run.workspace, "vmpooler", config, name="cycles") as server:
        profile = run.profiled(server, "cycles", duration)
        load = loadgen.run(server.port, cycles, CLIENTS_WRITE, duration, 0.5, PROCESSES, **params)
        run.keep_profile("checkout cycles", profile)
        settle = wait_until(lambda: _ready_count(server.port, "cycle") == size, 30, 0.02)
        # Empty the pool in one request, then time the refill.
        status, body = request(server.port, "POST", "/api/v1/vm", json.dumps({"cycle": size}))
        if status != 200:
            raise RuntimeError(f"emptying the pool failed: {status} {body}")
        refilled = wait_until(lambda: _ready_count(server.port, "cycle") == size, 60, 0.005)
    floor_seconds = refill_floor(run.workspace, size)
    rate = lambda result: result.count("delete", 200) / result.seconds
    return [
        Row("3 cycles", f"checkout+return cycles/s, pool of {size}, {CLIENTS_WRITE} clients", rate(load), "/s",
            rate(f_load), "Tornado + sqlite3 checkout and give-back (no refill needed)", "", None,
            f"checkout p50 {ms(load.percentile(50, 'checkout'))}, p99 {ms(load.percentile(99, 'checkout'))}"),
        Row("3 cycles", "503 answers (pool empty) during the cycles", load.count("checkout", 503), "",
            f_load.count("checkout", 503), "same", "", None,
            f"{load.count('checkout', 503) / max(load.count('checkout'), 1):.0%} of checkouts; clients wait 5 ms "
            f"after a 503; pool back to full {settle if settle is None else round(settle, 2)} s after the load"),
        Row("3 cycles", f"empty pool of {size} back to full", refilled * 1000 if refilled else float("nan"), "ms",
            floor_seconds * 1000, "the refill's writes with sqlite3 alone", "", None,
            "dummy provider, zero delays, task_limit 10"),
    ]


# --- 5: scale ------------------------------------------------------------------------------------
POOLS = 100


def _seed_scale(db_path: str, total: int) -> float:
    per_pool = total // POOLS
    running = per_pool // 5
    began = time.perf_counter()
    seed_pools(db_path, {f"pool{p:03d}": {"ready": per_pool - running, "running": running} for p in range(POOLS)})
    return time.perf_counter() - began


def _sql_ms(db_path: str, sql: str, params=(), repeat: int = 5, clock=time.perf_counter) -> float:
    """Median ms of running ``sql`` with sqlite3 and fetching every row (``clock``:
    time.process_time for this process's CPU, time.perf_counter for wall time)."""
    db = sqlite3.connect(db_path)
    samples = []
    for _ in range(repeat):
        began = clock()
        db.execute(sql, params).fetchall()
        samples.append((clock() - began) * 1000)
    db.close()
    return median(samples)


def _exponent(small: tuple, large: tuple) -> float:
    """b in cost = a * n^b between two (n, cost) points."""
    (n1, c1), (n2, c2) = small, large
    return math.log(c2 / c1) / math.log(n2 / n1) if c1 > 0 and c2 > 0 else float("nan")


def scale(run: Run) -> list:
    sizes = run.pick([1000, 10000, 50000], [1000, 10000])
    rows, points = [], {"pass": [], "status": [], "rss": []}
    # status_cache_seconds 0: this scenario measures computing /status, not serving a cached answer
    settings = {"vm_checktime": 60, "check_loop_delay_min": 3600, "reconcile_interval": 3600,
                "status_cache_seconds": 0}
    for total in sizes:
        db = run.workspace.file(f"scale-{total}.db")
        seed_seconds = _seed_scale(db, total)
        per_pool = total // POOLS
        pools = [dummy_pool(f"pool{p:03d}", per_pool - per_pool // 5) for p in range(POOLS)]
        config = write_config(run.workspace.file(f"scale-{total}.yaml"), db, pools, settings)
        with Server(run.workspace, "vmpooler", config, name=f"scale-{total}") as server:
            status, ticks = server.get("/_bench/tick?passes=7" + ("&profile=1" if run.profile else ""))
            if ticks.get("profile"):
                run.profiles[f"pass at {total}"] = ticks["profile"]
            pass_ms = median(ticks["cpu_ms"][1:])  # the first pass warms caches
            # A busy pass: 1/12 of the ready VMs due for their check (a pass every 5 s, checks
            # every minute), so the pass launches that many provider calls.
            writer = sqlite3.connect(db, timeout=10)
            writer.execute("UPDATE vms SET checked_at = ? WHERE state = 'ready' AND id % 12 = 0",
                           (str(utcnow() - datetime.timedelta(hours=2)),))
            writer.commit()
            writer.close()
            status, busy = server.get("/_bench/tick?passes=1")
            drained = wait_until(lambda: server.get("/_bench/in_flight")[1]["in_flight"] == 0, 60, 0.05)
            profile = run.profiled(server, f"status-{total}", 3)
            latencies = timed_requests(server.port, "/api/v1/status", run.pick(200, 60), run.pick(4.0, 2.0))
            run.keep_profile(f"GET /status at {total}", profile)
            status_ms = median(latencies)
            rss = server.peak_rss_mb()
            start_seconds = server.info["start_seconds"]
        with Server(run.workspace, "floor", "--db", db, name=f"scale-floor-{total}") as floor:
            floor_status_ms = median(timed_requests(floor.port, "/count", run.pick(200, 60), 2.0))
            floor_rss = floor.peak_rss_mb()
        floor_pass_ms = _sql_ms(db, COUNT_SQL, clock=time.process_time)
        points["pass"].append((total, pass_ms))
        points["status"].append((total, status_ms))
        points["rss"].append((total, rss))
        at = f"{total} VMs"
        ten = total == 10000
        rows += [
            Row("5 scale", f"{at}: manager pass, CPU", pass_ms, "ms", floor_pass_ms, "one grouped count, sqlite3",
                "< 200 ms at 10,000" if ten else "", pass_ms < 200 if ten else None,
                f"wall {median(ticks['wall_ms'][1:]):.1f} ms; nothing due; seeded in {seed_seconds:.1f} s, "
                f"service started (reconcile of {POOLS} pools) in {start_seconds:.1f} s"),
            Row("5 scale", f"{at}: pass with 1/12 of ready VMs due", busy["cpu_ms"][0], "ms", floor_pass_ms,
                "one grouped count, sqlite3", "", None,
                f"launched their checks; all done {drained if drained is None else round(drained, 1)} s later"),
            Row("5 scale", f"{at}: GET /status p50", status_ms, "ms", floor_status_ms,
                "Tornado + grouped count (sqlite3)", "< 25 ms at 10,000" if ten else "", status_ms < 25 if ten else None,
                f"p90 {sorted(latencies)[int(len(latencies) * 0.9)]:.1f} ms over {len(latencies)} requests"),
            Row("5 scale", f"{at}: peak RSS", rss, "MB", floor_rss, "floor server after its counts",
                "< 200 MB at 10,000" if ten else "", rss < 200 if ten else None,
                "includes the dummy provider's in-memory inventory"),
        ]
    if len(sizes) >= 2:
        for key, label in (("pass", "manager pass CPU"), ("status", "GET /status p50"), ("rss", "peak RSS")):
            small, large = points[key][-2], points[key][-1]
            b = _exponent(small, large)
            rows.append(Row("5 scale", f"growth of {label}, {small[0]} -> {large[0]} VMs", b, "exponent",
                            None, "", "<= 1 (linear)", b <= 1.1, "cost ~ n^b; 10% allowed for noise"))
    return rows


# --- 6: history ---------------------------------------------------------------------------------
# The service keeps daily totals (duration_days) beside the samples; the floor reads them the same way.
DURATION_SQL = ("SELECT day, kind, pool, count, total, low, high FROM duration_days "
                "WHERE kind IN ('boot', 'clone') AND day >= ? AND day <= ?")
ROLLUP_SQL = ("INSERT INTO duration_days (kind, day, pool, count, total, low, high) SELECT kind, day, pool, "
              "count(*), sum(seconds), min(seconds), max(seconds) FROM durations GROUP BY kind, day, pool")
TAG_SQL = "SELECT day, name, value, count(*) FROM vm_tags WHERE day >= ? AND day <= ? GROUP BY day, name, value"


def _seed_history(db_path: str, samples: int, tagged: int, days: int = 365) -> float:
    from vmpooler.db.models import durations, vm_tags, vms

    began = time.perf_counter()
    database = create_database(db_path)
    rng = random.Random(5)
    today = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    stamps = [today - datetime.timedelta(days=d) for d in range(days)]
    pools = [f"pool{p:02d}" for p in range(20)]
    vm_batch = []
    for n in range(tagged):
        row = vm_rows(pools[n % len(pools)], "destroyed", 1, start=n, live=False, now=stamps[n % days])[0]
        vm_batch.append(row)
    bulk_insert(database, vms, vm_batch)
    projects, users = [f"project-{i}" for i in range(30)], [f"user-{i}" for i in range(60)]
    tags = []
    for vm_id in range(1, tagged + 1):
        stamp = stamps[vm_id % days]
        day = stamp.strftime("%Y-%m-%d")
        tags.append(dict(vm_id=vm_id, name="project", value=rng.choice(projects), tagged_at=stamp, day=day))
        tags.append(dict(vm_id=vm_id, name="created_by", value=rng.choice(users), tagged_at=stamp, day=day))
    bulk_insert(database, vm_tags, tags, chunk=50000)
    batch = []
    for n in range(samples):
        stamp = stamps[n % days]
        batch.append(dict(kind=rng.choice(("boot", "clone")), pool=rng.choice(pools), vm_name=f"vm{n}",
                          seconds=rng.uniform(5, 120), at=stamp, day=stamp.strftime("%Y-%m-%d")))
        if len(batch) == 100000:
            bulk_insert(database, durations, batch, chunk=100000)
            batch = []
    bulk_insert(database, durations, batch, chunk=100000)
    with database.write() as conn:  # what the service's record_duration keeps up to date, in bulk
        conn.exec_driver_sql(ROLLUP_SQL)
    database.dispose()
    return time.perf_counter() - began


def history(run: Run) -> list:
    samples, tagged = run.pick(1_000_000, 100_000), run.pick(200_000, 20_000)
    db = run.workspace.file("history.db")
    seed_seconds = _seed_history(db, samples, tagged)
    today = utcnow().date()
    first = (today - datetime.timedelta(days=364)).isoformat()
    config = write_config(run.workspace.file("history.yaml"), db, [dummy_pool("pool00", 0)], {})
    with Server(run.workspace, "vmpooler", config, name="history") as server:
        profile = run.profiled(server, "summary-year", 4)
        year = timed_requests(server.port, f"/api/v1/summary?from={first}&to={today}", run.pick(7, 3), 20)
        body = server.get(f"/api/v1/summary?from={first}&to={today}")[1]
        counted = body["boot"]["count"]["total"] + body["clone"]["count"]["total"]
        assert counted == samples, f"the summary counted {counted} samples of {samples}"
        run.keep_profile("GET /summary, a year", profile)
        day = timed_requests(server.port, "/api/v1/summary", 50, 5)
    both = lambda days, repeat: sum(_sql_ms(db, sql, days, repeat) for sql in (DURATION_SQL, TAG_SQL))
    floor_year, floor_day = both((first, today.isoformat()), 3), both((today.isoformat(),) * 2, 20)
    what = "the same two GROUP BY queries, sqlite3"
    note = f"{samples:,} duration samples, tags on {tagged:,} VMs over 365 days (seeded in {seed_seconds:.0f} s)"
    return [
        Row("6 history", "GET /summary, a year, p50", median(year), "ms", floor_year, what, "< 300 ms",
            median(year) < 300, note),
        Row("6 history", "GET /summary, one day, p50", median(day), "ms", floor_day, what, "< 20 ms",
            median(day) < 20, f"p90 {sorted(day)[int(len(day) * 0.9)]:.1f} ms"),
    ]


# --- 8: metrics ---------------------------------------------------------------------------------
def _p50(port: int, path: str, run: Run) -> float:
    return median(timed_requests(port, path, run.pick(200, 60), run.pick(4.0, 2.0)))


def metrics(run: Run) -> list:
    """A Prometheus scrape at 10,000 VMs in 100 pools against the grouped count alone, and what the
    per-request counting adds to a fast route (the same route with and without :prometheus:)."""
    total = 10000
    db = run.workspace.file("metrics.db")
    _seed_scale(db, total)
    per_pool = total // POOLS
    pools = [dummy_pool(f"pool{p:03d}", per_pool - per_pool // 5) for p in range(POOLS)]
    settings = {"vm_checktime": 60, "check_loop_delay_min": 3600, "reconcile_interval": 3600,
                "status_cache_seconds": 0}
    plain = write_config(run.workspace.file("metrics-off.yaml"), db, pools, settings)
    config = write_config(run.workspace.file("metrics.yaml"), db, pools, settings, prometheus={})
    with Server(run.workspace, "vmpooler", config, name="metrics") as server:
        for index in range(300):  # some traffic first, so the HTTP series exist as in a deployment
            request(server.port, "POST" if index % 3 else "GET", f"/api/v1/vm/pool{index % POOLS:03d}")
        status, text = request(server.port, "GET", "/prometheus")
        samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        status, rendering = request(server.port, "GET", f"/_bench/exposition?repeat={run.pick(20, 5)}")
        profile = run.profiled(server, "scrape", 3)
        scrape_ms = _p50(server.port, "/prometheus", run)
        run.keep_profile("GET /prometheus at 10,000 VMs", profile)
        status_ms = _p50(server.port, "/api/v1/status", run)
        route_on_ms = _p50(server.port, "/api/v1/vm", run)
    with Server(run.workspace, "vmpooler", plain, name="metrics-off") as server:
        route_off_ms = _p50(server.port, "/api/v1/vm", run)
    with Server(run.workspace, "floor", "--db", db, name="metrics-floor") as floor:
        floor_ms = _p50(floor.port, "/count", run)
    return [
        Row("8 metrics", "10000 VMs: GET /prometheus p50", scrape_ms, "ms", floor_ms,
            "Tornado + grouped count (sqlite3)", "< 25 ms at 10,000", scrape_ms < 25,
            f"{samples} samples, {len(text) // 1024} KiB; GET /status p50 {status_ms:.2f} ms in the same server"),
        Row("8 metrics", "10000 VMs: rendering the exposition, CPU", rendering["ours"], "ms", rendering["library"],
            "prometheus_client.generate_latest, same registry", "<= 1.25x floor",
            rendering["ours"] <= 1.25 * rendering["library"],
            "both include the scrape-time query; ours writes the original's counter names"),
        Row("8 metrics", "GET /api/v1/vm p50 with :prometheus:", route_on_ms, "ms", route_off_ms,
            "the same route, same data, no :prometheus:", "", None, "what counting a request adds"),
    ]

