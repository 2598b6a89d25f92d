"""One service process on PostgreSQL against floors that are Tornado processes on the same database
(issue 21, target 2), measured in one run with the same clients:

- GET /vm/<host> against a Tornado process reading the VM's row by name with one psycopg SELECT;
- the checkout burst (8 keep-alive clients) against a Tornado process doing one transaction per
  checkout: the FOR UPDATE SKIP LOCKED pick, the guarded UPDATE, the event, COMMIT.

Both start from the same seeded pool (benchmarks/scaleout.py ``measure_cluster``: rows in the
database and VMs in the dummy provider's inventory, so that no checkout waits for a clone), in
ROUNDS alternating rounds whose medians are compared. The one service
process keeps the dummy's VMs in memory, as the SQLite scenarios do (the file several processes
share costs every clone a rewrite of it, work the floor has no counterpart of). The database is
$VMPOOLER_BENCH_POSTGRES_URL (else $VMPOOLER_TEST_POSTGRES_URL): its tables are dropped and recreated.
"""
from __future__ import annotations

from typing import NamedTuple

from benchmarks import loadgen
from benchmarks.harness import ROUNDS, Row, Server, by_round, median, medians, seed_rows
from benchmarks.scaleout import POOL, URL_VARIABLES, fresh_postgres, measure_cluster, postgres_url
from benchmarks.scenarios import CLIENTS_READ, CLIENTS_WRITE, PROCESSES, Run, burst


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


class _Round(NamedTuple):
    """One round's figures: GET /vm/<host> req/s, checkouts/s and their p99 (ms), returns/s."""
    reads: float
    checkouts: float
    checkout_p99: float
    returns: float


def postgres(run: Run) -> list:
    url = postgres_url()
    if not url:
        return [Row("10 postgresql", "skipped", float("nan"), "", note=f"set {URL_VARIABLES[0]}")]
    duration, warmup = run.pick(4.0, 1.5), run.pick(0.8, 0.3)
    total = run.pick(400, 160)
    floors, ours, cores = [], [], []
    for number in range(run.pick(ROUNDS, 1)):
        floor = floor_figures(run, url, total, duration, warmup)
        floors.append(_round(floor["host"], *floor["burst"][:2]))
        service = measure_cluster(run, f"pg-one-{number}", url, 1, total, duration, warmup, shared_inventory=False)
        ours.append(_round(service["host"].result, *service["burst"].result[:2]))
        cores.append((service["host"].cores, service["burst"].cores))
    return rows(floors, ours, cores, len(service["burst"].result[2]))


def _round(host, taken, deleted) -> _Round:
    return _Round(host.rate, taken.rate, taken.percentile(99), deleted.rate)


def rows(floors: list, ours: list, cores: list, hosts: int) -> list:
    floor, service = medians(floors), medians(ours)
    rounds = lambda field: f"by round {by_round(ours, floors, field)}"
    read_what = "Tornado + one psycopg SELECT by name"
    take_what = "Tornado + one psycopg transaction per checkout (SKIP LOCKED pick, guarded UPDATE, event)"
    medians_of = f"; medians of {len(ours)} alternating rounds"
    return [
        Row("10 postgresql", f"GET /vm/<host> ({CLIENTS_READ} clients), one process", service.reads, "req/s",
            floor.reads, read_what + medians_of, ">= 0.5x floor", service.reads >= 0.5 * floor.reads,
            f"{rounds('reads')}; the service used {median(c[0] for c in cores):.2f} cores"),
        Row("10 postgresql", f"checkouts/s, {hosts} VMs, {CLIENTS_WRITE} clients, one process", service.checkouts,
            "/s", floor.checkouts, take_what + medians_of, ">= 0.5x floor", service.checkouts >= 0.5 * floor.checkouts,
            f"{rounds('checkouts')}; no hostname twice (asserted); the service used "
            f"{median(c[1] for c in cores):.2f} cores"),
        Row("10 postgresql", "checkout p99", service.checkout_p99, "ms", floor.checkout_p99, take_what + medians_of,
            "<= 3x floor p99", service.checkout_p99 <= 3 * floor.checkout_p99, rounds("checkout_p99")),
        Row("10 postgresql", "returns (DELETE)/s", service.returns, "/s", floor.returns,
            "Tornado + one psycopg transaction (completed, event)" + medians_of, "", None, rounds("returns")),
    ]
