"""How the IOLoop should reach PostgreSQL when every statement is a network round trip: the
measurement behind db/database.py's ``Database.run`` (docs/performance.md, "Database access").

    python benchmarks/database_access.py --url postgresql://u:p@127.0.0.1/scratch [--delay 0.001]

The database behind ``--url`` is EMPTIED (its tables dropped): give it a scratch database. Every
variant checks out ``--count`` VMs (the real ``checkout.checkout`` statements: the longest-ready VM
FOR UPDATE SKIP LOCKED, the guarded UPDATE, the event) with ``--clients`` concurrent coroutines on
one asyncio loop, through tests/netproxy.py's DelayProxy (``--delay`` seconds each way per chunk),
and reports checkouts/s, the p50/p99 of one checkout, and the loop's worst lag (how late a 1 ms
timer fired: what every other request would have waited).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from benchmarks.harness import vm_rows  # noqa: E402
from tests.netproxy import DelayProxy  # noqa: E402
from vmpooler.db import checkout as checkout_store  # noqa: E402
from vmpooler.db.database import Database, utcnow  # noqa: E402
from vmpooler.db import vm_statements  # noqa: E402
from vmpooler.db.events import GUARDED_UPDATE, _INSERT_EVENT  # noqa: E402
from vmpooler.db.models import metadata, vms  # noqa: E402

WANT = [checkout_store.Want("a", ("a",), 1)]


def reset(url: str, count: int) -> None:
    db = Database(url)
    with db.engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    db.upgrade()
    with db.write() as conn:
        conn.execute(vms.insert(), vm_rows("a", "ready", count))
    db.dispose()


def checkout_blocking(db):
    async def one():
        checkout_store.checkout(db, WANT, utcnow(), 24)
    return one


def checkout_threads(db, executor):
    async def one():
        await asyncio.get_running_loop().run_in_executor(executor, checkout_store.checkout, db, WANT, utcnow(), 24)
    return one


def checkout_group_commit(db):
    async def one():
        await db.run(checkout_store.checkout, WANT, utcnow(), 24)
    return one


def checkout_asyncio_engine(engine):
    """The same three statements through SQLAlchemy's asyncio engine (psycopg's async mode)."""
    async def one():
        now = utcnow()
        async with engine.begin() as conn:
            vm = (await conn.execute(vm_statements.oldest_ready(1).statement, {"pool_0": "a"})).first()
            await conn.execute(GUARDED_UPDATE.statement, {"guard_id": vm.id, "guard_state": vm.state, "state": "running",
                                                "state_changed_at": now, "checkout_at": now})
            await conn.execute(_INSERT_EVENT.statement, {"vm_id": vm.id, "vm_name": vm.name, "pool": vm.pool, "at": now,
                                               "from_state": vm.state, "to_state": "running", "reason": "bench"})
    return one


async def drive(one, count: int, clients: int) -> dict:
    latencies, lag = [], [0.0]
    remaining = [count]

    async def client():
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - started)

    last = [time.perf_counter()]

    async def ticker():
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            lag[0] = max(lag[0], now - last[0] - 0.001)
            last[0] = now

    watch = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    started = last[0] = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    lag[0] = max(lag[0], time.perf_counter() - last[0] - 0.001)
    watch.cancel()
    latencies.sort()
    return {"per_s": count / elapsed, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "lag_ms": lag[0] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--delay", type=float, default=0.001)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    url = make_url(args.url)
    proxy = DelayProxy(url.port or 5432, delay=args.delay).start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    results = {}
    try:
        for name in ("blocking the loop (before)", "thread pool, one transaction each", "asyncio engine (psycopg async)",
                     "group commit (Database.run)"):
            reset(args.url, args.count)
            db = Database(proxied)
            executor = concurrent.futures.ThreadPoolExecutor(args.clients)
            engine = None
            if name.startswith("blocking"):
                one = checkout_blocking(db)
            elif name.startswith("thread"):
                one = checkout_threads(db, executor)
            elif name.startswith("asyncio"):
                from sqlalchemy.ext.asyncio import create_async_engine
                engine = create_async_engine(make_url(proxied).set(drivername="postgresql+psycopg_async"),
                                             pool_size=args.clients)
                one = checkout_asyncio_engine(engine)
            else:
                one = checkout_group_commit(db)

            async def run():
                result = await drive(one, args.count, args.clients)
                if engine is not None:
                    await engine.dispose()
                return result
            results[name] = asyncio.run(run())
            executor.shutdown()
            db.dispose()
            print(f"{name:40s} {results[name]['per_s']:8.0f}/s  p50 {results[name]['p50_ms']:6.1f} ms  "
                  f"p99 {results[name]['p99_ms']:6.1f} ms  worst loop lag {results[name]['lag_ms']:6.1f} ms",
                  flush=True)
    finally:
        proxy.close()


if __name__ == "__main__":
    main()
