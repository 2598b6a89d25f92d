"""One service process on PostgreSQL against floors that are Tornado processes on the same database
(issue 21, target 2), measured in one run with the same clients:

- GET /vm/<host> against a Tornado process reading the VM's row by name with one psycopg SELECT;
- the checkout burst (8 keep-alive clients) against a Tornado process doing one transaction per
  checkout: the FOR UPDATE SKIP LOCKED pick, the guarded UPDATE, the event, COMMIT.

Both start from the same seeded pool (benchmarks/scaleout.py ``measure_cluster``: rows in the database
and VMs in the dummy provider's inventory, so that no checkout waits for a clone). The one service
process keeps the dummy's VMs in memory, as the SQLite scenarios do (the file several processes
share costs every clone a rewrite of it, work the floor has no counterpart of). The database is
$VMPOOLER_BENCH_POSTGRES_URL (else $VMPOOLER_TEST_POSTGRES_URL): its tables are dropped and recreated.
"""
from __future__ import annotations

from benchmarks import loadgen
from benchmarks.harness import Row, Server, seed_rows
from benchmarks.scaleout import POOL, URL_VARIABLES, fresh_postgres, measure_cluster, postgres_url
from benchmarks.scenarios import CLIENTS_READ, CLIENTS_WRITE, PROCESSES, Run, burst, ms


def floor_figures(run: Run, url: str, total: int, duration: float, warmup: float) -> dict:
    """{"host": reads, "burst": (checkouts, returns, hosts)} of the PostgreSQL floor process, its
    pool seeded as ``measure_cluster`` seeds the service's."""
    database = fresh_postgres(url)
    names = seed_rows(database, {POOL: {"ready": total + CLIENTS_WRITE * 10}})
    database.dispose()
    with Server(run.workspace, "floor", "--pg", url, name="pg-floor") as floor:
        host = loadgen.run(floor.port, loadgen.repeat, CLIENTS_READ, duration, warmup, PROCESSES,
                           paths=[f"/api/v1/vm/{name}" for name in names])
        if host.count(status=200) != host.count():
            raise RuntimeError(f"the PostgreSQL floor's reads were not all 200: {host.statuses}")
        return {"host": host, "burst": burst(floor.port, POOL, total)}


def postgres(run: Run) -> list:
    url = postgres_url()
    if not url:
        return [Row("10 postgresql", "skipped", float("nan"), "", note=f"set {URL_VARIABLES[0]}")]
    duration, warmup = run.pick(4.0, 1.5), run.pick(0.8, 0.3)
    total = run.pick(400, 160)
    floor = floor_figures(run, url, total, duration, warmup)
    service = measure_cluster(run, "pg-one", url, 1, total, duration, warmup, shared_inventory=False)
    return rows(floor, service)


def rows(floor: dict, service: dict) -> list:
    f_host, (f_taken, f_deleted, _) = floor["host"], floor["burst"]
    host, (taken, deleted, hosts) = service["host"].result, service["burst"].result
    read_what = "Tornado + one psycopg SELECT by name"
    take_what = "Tornado + one psycopg transaction per checkout (SKIP LOCKED pick, guarded UPDATE, event)"
    latency = lambda result: f"p50 {ms(result.percentile(50))}, p99 {ms(result.percentile(99))}"
    return [
        Row("10 postgresql", f"GET /vm/<host> ({CLIENTS_READ} clients), one process", host.rate, "req/s",
            f_host.rate, read_what, ">= 0.5x floor", host.rate >= 0.5 * f_host.rate,
            f"{latency(host)}; floor {latency(f_host)}; the service used {service['host'].cores:.2f} cores"),
        Row("10 postgresql", f"checkouts/s, {len(hosts)} VMs, {CLIENTS_WRITE} clients, one process", taken.rate,
            "/s", f_taken.rate, take_what, ">= 0.5x floor", taken.rate >= 0.5 * f_taken.rate,
            f"503s {taken.count(status=503)}; floor 503s {f_taken.count(status=503)}; p50 "
            f"{ms(taken.percentile(50))}; floor p50 {ms(f_taken.percentile(50))}; no hostname twice (asserted); the "
            f"service used {service['burst'].cores:.2f} cores"),
        Row("10 postgresql", "checkout p99", taken.percentile(99), "ms", f_taken.percentile(99), take_what,
            "<= 3x floor p99", taken.percentile(99) <= 3 * f_taken.percentile(99), ""),
        Row("10 postgresql", "returns (DELETE)/s", deleted.rate, "/s", f_deleted.rate,
            "Tornado + one psycopg transaction (completed, event)", "", None,
            f"{latency(deleted)}; floor {latency(f_deleted)}"),
    ]
