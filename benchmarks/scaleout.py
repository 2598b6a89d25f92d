"""Scale-out: read and checkout throughput of 1, 2 and 3 service processes on one PostgreSQL
database, the clients spread over them as a round-robin balancer would, beside one process on
SQLite; each against floors measured in the same run:

- the HTTP floor: the same number of bare Tornado processes (benchmarks/server.py floor);
- PostgreSQL's own speed: the statements of a GET /vm/<host> and of a checkout, sent with psycopg
  from one client (and from as many clients as there are service processes), no HTTP, no Python
  service code: what the database gives this machine at the least cost;
- on SQLite, the sqlite3 checkout floor of scenario 2.

The pools are seeded full (rows in the database and VMs in the dummy provider's shared inventory
file) so that no checkout waits for a clone. The database is PostgreSQL at
$VMPOOLER_BENCH_POSTGRES_URL (else $VMPOOLER_TEST_POSTGRES_URL): its tables are dropped and
recreated. Without one, the scenario reports that it was skipped. See docs/performance.md, "Scale-out".
"""
from __future__ import annotations

import contextlib
import json
import os
import time

from benchmarks import loadgen
from benchmarks.floors import PG_EVENT_SQL, PG_MOVE_SQL, PG_READ_SQL, PG_TAKE_SQL
from benchmarks.harness import Row, Server, cpu_seconds, create_database, seed_rows, wait_until, write_config
from benchmarks.scenarios import CLIENTS_READ, CLIENTS_WRITE, PROCESSES, burst, dummy_pool, ms
from benchmarks.threads import run_threads

URL_VARIABLES = ("VMPOOLER_BENCH_POSTGRES_URL", "VMPOOLER_TEST_POSTGRES_URL")
POOL = "scale"
COUNTS = (1, 2, 3)
#: the service as deployed, but no periodic check of every seeded VM during the measurement
SETTINGS = {"vm_checktime": 60}

def postgres_url():
    return next((os.environ[name] for name in URL_VARIABLES if os.environ.get(name)), None)


def libpq(url: str) -> str:
    from vmpooler.db.notify import libpq_url

    return libpq_url(url)


def fresh_postgres(url: str):
    """The database at ``url`` emptied and upgraded to the service's schema."""
    from sqlalchemy import text

    from vmpooler.db.database import Database
    from vmpooler.db.models import metadata

    database = Database(url)
    with database.engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    database.upgrade()
    return database


def write_inventory(path: str, names: list) -> None:
    """The dummy provider's inventory file holding ``names`` (booted, powered on) in POOL's folder."""
    now = time.time()
    vms = {name: {"folder": POOL, "pool": POOL, "template": POOL, "created": now, "boot_at": 0,
                  "powered_on": True, "ip": "127.0.0.1", "hostname": name, "snapshots": [], "disks": []}
           for name in names}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"vms": vms}, handle)


class Measured:
    """A load result and the CPU its server processes used meanwhile (in cores)."""

    def __init__(self, servers: list, drive):
        before, began = [cpu_seconds(s.pid) for s in servers], time.monotonic()
        self.result = drive()
        wall = time.monotonic() - began
        self.cores = sum(cpu_seconds(s.pid) - b for s, b in zip(servers, before)) / wall


# --- floors ------------------------------------------------------------------------------------
def http_floor(run, count: int, duration: float, warmup: float) -> float:
    """Requests/s of ``count`` bare Tornado processes, the clients spread over them."""
    with contextlib.ExitStack() as stack:
        floors = [stack.enter_context(Server(run.workspace, "floor", name=f"scaleout-floor-{count}-{i}"))
                  for i in range(count)]
        return loadgen.run([f.port for f in floors], loadgen.repeat, CLIENTS_READ, duration, warmup, PROCESSES,
                           paths=["/floor"]).rate


def _transactions(url: str, clients: int, seconds: float, one) -> float:
    """Transactions/s of ``clients`` psycopg connections each running ``one(cursor, n)`` in a
    transaction, over ``seconds``; ``one`` returns False when there is nothing left to do (the
    rate is then over the time until every client stopped)."""
    import psycopg

    counts = [0] * clients

    def client(index):
        with psycopg.connect(libpq(url)) as conn:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                with conn.transaction(), conn.cursor() as cursor:
                    if one(cursor, index * 1000003 + counts[index]) is False:
                        return
                counts[index] += 1

    began = time.monotonic()
    run_threads(client, clients, seconds + 60)
    return sum(counts) / (time.monotonic() - began)


def postgres_floors(url: str, seconds: float, ready: int) -> dict:
    """{(what, clients): transactions/s} of the read and the checkout statements, no HTTP."""
    database = fresh_postgres(url)
    names = seed_rows(database, {POOL: {"ready": ready}})
    database.dispose()

    def read(cursor, n):
        cursor.execute(PG_READ_SQL[0], (names[n % len(names)],))
        vm_id = cursor.fetchone()[0]
        for sql in PG_READ_SQL[1:]:
            cursor.execute(sql, (vm_id,))
            cursor.fetchall()

    def checkout(cursor, n):
        cursor.execute(PG_TAKE_SQL, (POOL,))
        row = cursor.fetchone()
        if row is None:
            return False
        cursor.execute(PG_MOVE_SQL, (row[0],))
        cursor.execute(PG_EVENT_SQL, (row[0], row[1], POOL, "ready", "running", "checked out"))

    floors = {}
    for clients in (1, max(COUNTS)):
        floors[("read", clients)] = _transactions(url, clients, seconds, read)
        _all_ready_again(url)  # each checkout run starts from the full pool (a fast one empties it)
        floors[("checkout", clients)] = _transactions(url, clients, seconds, checkout)
    return floors


def _all_ready_again(url: str) -> None:
    import psycopg

    with psycopg.connect(libpq(url)) as conn:
        conn.execute("UPDATE vms SET state = 'ready' WHERE pool = %s", (POOL,))


# --- the service -------------------------------------------------------------------------------
def _leader_known(server) -> bool:
    status, body = server.get("/api/v1/status")
    manager = body.get("status", {}).get("manager", {}) if status == 200 else {}
    return bool(manager.get("current_leader") or manager.get("leader"))


def measure_cluster(run, label: str, url, processes: int, total: int, duration: float, warmup: float,
                    shared_inventory: bool = True) -> dict:
    """``processes`` service processes on one database (``url``; None: an SQLite file), its pool
    seeded with ``total`` ready VMs and more: reads, then a burst of ``total`` checkouts. The
    dummy provider keeps its VMs in a file all the processes share (every clone and destroy
    rewrites it: a few ms each at this size), or, without ``shared_inventory`` (one process), in
    memory as in the SQLite scenarios."""
    ready = total + CLIENTS_WRITE * 10
    if url:
        database = fresh_postgres(url)
    else:
        database = create_database(run.workspace.file(f"{label}.db"))
        url = f"sqlite:///{run.workspace.file(f'{label}.db')}"
    names = seed_rows(database, {POOL: {"ready": ready}})
    database.dispose()
    provider: dict = {}
    if shared_inventory:
        provider["filename"] = run.workspace.file(f"{label}-inventory.json")
        write_inventory(provider["filename"], names)
    config = write_config(run.workspace.file(f"{label}.yaml"), None, [dummy_pool(POOL, ready)], SETTINGS,
                          providers={"dummy": provider}, url=url)
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(Server(run.workspace, "vmpooler", config, name=f"{label}-{i}"))
                   for i in range(processes)]
        if wait_until(lambda: any(_leader_known(s) for s in servers), 30, 0.1) is None:
            raise RuntimeError(f"{label}: no process took the manager's lease within 30 s")
        time.sleep(0.5)  # the new leader's first reconcile
        ports = [s.port for s in servers]
        load = lambda paths: lambda: loadgen.run(ports, loadgen.repeat, CLIENTS_READ, duration, warmup, PROCESSES,
                                                 paths=paths)
        host = Measured(servers, load([f"/api/v1/vm/{name}" for name in names]))
        status = Measured(servers, load(["/api/v1/status"]))
        checkouts = Measured(servers, lambda: burst(ports, POOL, total))
    for what, measured in (("GET /vm/<host>", host), ("GET /status", status)):
        if measured.result.count(status=200) != measured.result.count():
            raise RuntimeError(f"{label} {what}: answers that were not 200: {measured.result.statuses}")
    return {"host": host, "status": status, "burst": checkouts}


def scaleout(run) -> list:
    url = postgres_url()
    duration, warmup = run.pick(4.0, 1.5), run.pick(0.8, 0.3)
    total = run.pick(400, 160)  # checkouts run at tens per second on PostgreSQL here: keeps the run to minutes
    floors = {n: http_floor(run, n, duration, warmup) for n in COUNTS}
    results = {("sqlite", 1): measure_cluster(run, "scaleout-sqlite", None, 1, total, duration, warmup)}
    sqlite_floor_db = run.workspace.file("scaleout-sqlite-floor.db")
    floor_database = create_database(sqlite_floor_db)
    seed_rows(floor_database, {POOL: {"ready": total}})
    floor_database.dispose()
    with Server(run.workspace, "floor", "--db", sqlite_floor_db, name="scaleout-sqlite-floor") as floor:
        sqlite_checkout_floor = burst(floor.port, POOL, total)[0].rate
    if not url:
        return _rows(results, floors, None, sqlite_checkout_floor) + [Row(
            "7 scale-out", "PostgreSQL: skipped", float("nan"), "", note=f"set {URL_VARIABLES[0]}")]
    pg = postgres_floors(url, run.pick(3.0, 1.5), total * 4)
    for n in COUNTS:
        results[("postgresql", n)] = measure_cluster(run, f"scaleout-pg{n}", url, n, total, duration, warmup)
    return _rows(results, floors, pg, sqlite_checkout_floor)


def _rows(results: dict, floors: dict, pg, sqlite_checkout_floor: float) -> list:
    rows = [Row("7 scale-out", f"floor: {n} bare Tornado process{'es' if n > 1 else ''}", floors[n], "req/s",
                note=f"{CLIENTS_READ} clients spread over them") for n in COUNTS]
    if pg:
        for what in ("read", "checkout"):
            rows += [Row("7 scale-out", f"floor: PostgreSQL {what} transactions, {c} client{'s' if c > 1 else ''}",
                         pg[(what, c)], "/s", note="psycopg, the service's statements, no HTTP")
                     for c in (1, max(COUNTS))]
    for (backend, n), measured in results.items():
        at = f"{backend} x{n}"
        sql = backend == "sqlite"
        host, status, burst = measured["host"], measured["status"], measured["burst"]
        taken, deleted, hosts = burst.result
        read_note = lambda m: (f"p50 {ms(m.result.percentile(50))}, p99 {ms(m.result.percentile(99))}; "
                               f"service processes used {m.cores:.2f} cores")
        pg_read = "" if sql else f"; {host.result.rate / pg[('read', max(COUNTS))]:.0%} of PostgreSQL's read floor"
        rows += [
            Row("7 scale-out", f"{at}: GET /vm/<host>", host.result.rate, "req/s", floors[n],
                f"{n} bare Tornado process(es)", note=read_note(host) + pg_read),
            Row("7 scale-out", f"{at}: GET /status", status.result.rate, "req/s", floors[n],
                f"{n} bare Tornado process(es)", note=read_note(status) + "; status_cache_seconds 1 (default)"),
            Row("7 scale-out", f"{at}: checkouts/s, {len(hosts)} VMs, {CLIENTS_WRITE} clients", taken.rate, "/s",
                sqlite_checkout_floor if sql else pg[("checkout", 1)],
                "Tornado + one sqlite3 transaction" if sql else "PostgreSQL checkout transaction, 1 client",
                note=f"p50 {ms(taken.percentile(50))}, p99 {ms(taken.percentile(99))}; 503s "
                     f"{taken.count(status=503)}; returns {deleted.rate:.0f}/s; no hostname twice (asserted); "
                     f"service processes used {burst.cores:.2f} cores"),
        ]
    return rows
