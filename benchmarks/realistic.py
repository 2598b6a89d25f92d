"""The scenarios as a user runs the service (issue 13): pools filled by the manager itself (never
seeded), ready checks on (``vm_checktime: 1``), the manager running and refilling during the
load. Beside the seeded ``checkout`` scenario (scenarios.py), which isolates the API.

- ``fill``: 1,500 VMs (pools of 1,000 and 500) on the zero-delay dummy provider with
  ``task_limit: 100``, from an empty database to every VM ready; floor: the writes a fill needs
  at the least, with sqlite3 alone (scenarios.refill_floor).
- ``realistic``: the checkout burst (8 keep-alive clients, 1,000 VMs from a pool the manager
  filled) and the returns, each with both load generators (raw sockets, http.client in threads),
  against the floor with the same promises (issue 21: per checkout one transaction with its event,
  then the taken VM replaced; per return completed with its event, then destroyed), measured in the
  same run with the same client, in ROUNDS alternating rounds whose medians are compared; the plain
  one-transaction floor is reported beside it.
"""
from __future__ import annotations

import datetime
from typing import NamedTuple

from sqlalchemy import text

from benchmarks import loadgen
from benchmarks.harness import ROUNDS, Row, Server, by_round, medians, seed_pools, utcnow, wait_until, write_config
from benchmarks.scenarios import CLIENTS_WRITE, Run, burst, dummy_pool, ms, refill_floor

#: as a user configures it: every ready VM checked every minute
USER_SETTINGS = {"vm_checktime": 1, "task_limit": 100}
GENERATORS = {"raw sockets": loadgen.run, "http.client threads": loadgen.run_threads}


def _pool_counts(server: Server) -> dict:
    status, body = server.get("/api/v1/status?view=pools")
    return body.get("pools", {}) if status == 200 else {}


def _filled(server: Server, sizes: dict) -> bool:
    counts = _pool_counts(server)
    return all(counts.get(name, {}).get("ready", 0) >= size for name, size in sizes.items())


def fill(run: Run) -> list:
    """The fill on SQLite, and on PostgreSQL when a database is named ($VMPOOLER_TEST_POSTGRES_URL
    or $VMPOOLER_BENCH_POSTGRES_URL): issue 18 item 1, where PostgreSQL's fill stalled on
    deadlocks between the group commit's parallel batches."""
    from benchmarks.scaleout import fresh_postgres, postgres_url

    sizes = run.pick({"fill-a": 1000, "fill-b": 500}, {"fill-a": 400, "fill-b": 200})
    total = sum(sizes.values())
    floor = refill_floor(run.workspace, total)
    described = f"{total:,} VMs from empty (pools of {', '.join(map(str, sizes.values()))}), task_limit 100"
    rows = []
    url = postgres_url()
    if url:
        fresh_postgres(url).dispose()
    for label, database_url in (("SQLite", None), ("PostgreSQL", url)):
        if label == "PostgreSQL" and not url:
            continue
        seconds, spread = _fill_once(run, sizes, database_url, label)
        rows.append(Row(f"8 fill ({label})", described, seconds, "s", floor, "the fill's writes with sqlite3 alone",
                        "<= 10 s" if label == "SQLite" else "<= 30 s", seconds <= (10 if label == "SQLite" else 30),
                        f"from the server listening to the last VM ready (first clone requested to last ready: "
                        f"{spread:.2f} s); dummy provider, zero delays"))
    return rows


def _fill_once(run: Run, sizes: dict, url, label: str) -> tuple:
    """(seconds from listening to the last VM ready, seconds from the first clone to it)."""
    from vmpooler.db.database import Database

    safe = label.lower()
    db = run.workspace.file(f"fill-{safe}.db")
    config = write_config(run.workspace.file(f"fill-{safe}.yaml"), db, [dummy_pool(n, s) for n, s in sizes.items()],
                          USER_SETTINGS, url=url)
    with Server(run.workspace, "vmpooler", config, name=f"fill-{safe}") as server:
        listening = utcnow()
        profile = run.profiled(server, f"fill {label}", 8)
        if wait_until(lambda: _filled(server, sizes), 120, 0.1) is None:
            raise RuntimeError(f"the pools were not full after 120 s on {label}: {_pool_counts(server)}")
        run.keep_profile(f"fill {label}", profile)
    database = Database(url or f"sqlite:///{db}")  # the times the service recorded: /status is cached for a second
    try:
        with database.read() as conn:
            first, last = conn.execute(text("SELECT min(created_at), max(ready_at) FROM vms")).one()
    finally:
        database.dispose()
    first, last = (value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)
                   for value in (first, last))
    return (last - listening).total_seconds(), (last - first).total_seconds()


def realistic(run: Run) -> list:
    total = run.pick(1000, 400)
    rows = []
    for label, generator in GENERATORS.items():
        rows += _burst_rows(run, total, label, generator)
    return rows


def _floor_burst(run: Run, total: int, safe: str, promises: bool, generator) -> tuple:
    """(checkout result, return result) of the burst against a sqlite3 floor seeded with ``total``
    ready VMs (it has no manager: seeding is its fill); ``promises``: the floor with the same
    promises (benchmarks/floors.py)."""
    kind = "promises" if promises else "plain"
    path = run.workspace.file(f"real-floor-{kind}-{safe}.db")
    seed_pools(path, {"real": {"ready": total}})
    with Server(run.workspace, "floor", "--db", path, *(["--promises"] if promises else []),
                name=f"real-floor-{kind}-{safe}") as floor:
        taken, deleted, _ = burst(floor.port, "real", total, generator, pid=floor.pid)
    return taken, deleted


class _Round(NamedTuple):
    """One burst's figures: checkouts/s and their p99, returns/s and their p99 (ms), and the
    server's CPU microseconds per checkout and per return (what it costs, however the machine
    shares its cores: a steadier figure than the rates)."""
    checkouts: float
    checkout_p99: float
    returns: float
    return_p99: float
    checkout_cpu: float
    return_cpu: float

    @classmethod
    def of(cls, taken, deleted) -> "_Round":
        return cls(taken.rate, taken.percentile(99), deleted.rate, deleted.percentile(99),
                   taken.cpu_seconds / taken.requests * 1e6, deleted.cpu_seconds / deleted.requests * 1e6)


def _service_burst(run: Run, total: int, name: str, label: str, generator, profiled: bool) -> tuple:
    """(checkout result, return result, hostnames) of the burst against the service, its pool
    filled by its manager from an empty database."""
    db = run.workspace.file(f"{name}.db")
    config = write_config(run.workspace.file(f"{name}.yaml"), db, [dummy_pool("real", total)], USER_SETTINGS)
    with Server(run.workspace, "vmpooler", config, name=name) as server:
        if wait_until(lambda: _filled(server, {"real": total}), 120, 0.05) is None:
            raise RuntimeError(f"the manager did not fill the pool: {_pool_counts(server)}")
        profile = run.profiled(server, f"realistic {label}", 3) if profiled else None
        taken, deleted, hosts = burst(server.port, "real", total, generator, pid=server.pid)
        if profile is not None:
            run.keep_profile(f"realistic burst, {label}", profile)
    return taken, deleted, hosts


def _burst_rows(run: Run, total: int, label: str, generator) -> list:
    safe = label.split()[0]
    plain_taken, plain_deleted = _floor_burst(run, total, safe, False, generator)
    floors, ours, refused = [], [], 0
    for number in range(run.pick(ROUNDS, 1)):
        floors.append(_Round.of(*_floor_burst(run, total, f"{safe}-{number}", True, generator)))
        taken, deleted, hosts = _service_burst(run, total, f"real-{safe}-{number}", label, generator, number == 0)
        ours.append(_Round.of(taken, deleted))
        refused += taken.count(status=503)
    floor, service = medians(floors), medians(ours)
    rounds = lambda field: by_round(ours, floors, field)
    floor_what = (f"the floor with the same promises (Tornado + sqlite3, refill and destroy after answering); "
                  f"{label}; medians of {len(ours)} alternating rounds")
    plain = lambda result: f"{result.rate:.0f}/s, p99 {ms(result.percentile(99))}"
    scenario = f"9 realistic ({label})"
    return [
        Row(scenario, f"checkouts/s, {len(hosts)} VMs filled by the manager, {CLIENTS_WRITE} clients",
            service.checkouts, "/s", floor.checkouts, floor_what, ">= 0.7x floor",
            service.checkouts >= 0.7 * floor.checkouts,
            f"by round {rounds('checkouts')}; 503s: {refused}; the plain floor (one transaction, no event, no "
            f"refill): {plain(plain_taken)}; no hostname handed out twice (asserted)"),
        Row(scenario, "checkout p99", service.checkout_p99, "ms", floor.checkout_p99, floor_what,
            "<= 2x floor p99", service.checkout_p99 <= 2 * floor.checkout_p99, f"by round {rounds('checkout_p99')}"),
        Row(scenario, "returns (DELETE)/s", service.returns, "/s", floor.returns, floor_what, ">= 0.7x floor",
            service.returns >= 0.7 * floor.returns,
            f"by round {rounds('returns')}; the plain floor (back to ready): {plain(plain_deleted)}"),
        Row(scenario, "return p99", service.return_p99, "ms", floor.return_p99, floor_what,
            "<= 2x floor p99", service.return_p99 <= 2 * floor.return_p99, f"by round {rounds('return_p99')}"),
        Row(scenario, "server CPU per checkout (with its refill)", service.checkout_cpu, "us", floor.checkout_cpu,
            floor_what, "", None, f"by round {rounds('checkout_cpu')}"),
        Row(scenario, "server CPU per return (with its destroy)", service.return_cpu, "us", floor.return_cpu,
            floor_what, "", None, f"by round {rounds('return_cpu')}"),
    ]
