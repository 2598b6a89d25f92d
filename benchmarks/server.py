"""The servers the benchmarks measure, each in a process of its own on 127.0.0.1:

    python benchmarks/server.py vmpooler CONFIG.yaml [--no-manager]   the service (vmpooler.app.Service)
    python benchmarks/server.py floor [--db FILE [--promises] | --pg URL]   a floor (benchmarks/floors.py)

Each prints one JSON line ({"port", "pid", "start_seconds"}) once it listens, and stops on
SIGTERM or when its standard input closes (so it never outlives the benchmark).

The service gets extra routes under /_bench/ (benchmark only): ``tick`` runs the manager's
pass in this process and reports its CPU time (time.process_time), ``in_flight`` counts provider
work still running, ``exposition`` (with :prometheus:) times rendering the metrics. VMs the benchmark seeded into the database are given to the dummy provider
(``inject``) before the service starts, so the first reconcile finds them all.

The floors (a bare Tornado app, with sqlite3 or psycopg alone) are described in benchmarks/floors.py.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import tornado.web  # noqa: E402
from tornado.httpserver import HTTPServer  # noqa: E402
from tornado.netutil import bind_sockets  # noqa: E402

from benchmarks.floors import floor_app, postgres_app  # noqa: E402
from vmpooler.logs import setup_logging  # noqa: E402

# --- the service -------------------------------------------------------------------------------
class TickHandler(tornado.web.RequestHandler):
    """GET /_bench/tick?passes=N[&profile=1]: run the manager's pass N times here and now."""

    async def get(self):
        manager = self.settings["manager"]
        passes = int(self.get_argument("passes", "5"))
        cpu, wall = [], []
        for _ in range(passes):
            c0, w0 = time.process_time(), time.perf_counter()
            await manager.run_pass()
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
        report = None
        if self.get_argument("profile", "0") == "1":
            profiler = cProfile.Profile()
            profiler.enable()
            await manager.run_pass()
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
            report = text.getvalue()
        self.write({"cpu_ms": cpu, "wall_ms": wall, "profile": report})


class InFlightHandler(tornado.web.RequestHandler):
    def get(self):
        self.write({"in_flight": len(self.settings["manager"].in_flight)})


class ExpositionHandler(tornado.web.RequestHandler):
    """GET /_bench/exposition?repeat=N: CPU ms of rendering the metrics here (the service's own
    exposition, and prometheus_client's generate_latest over the same registry: the library's floor)."""

    def get(self):
        from prometheus_client import generate_latest

        metrics = self.settings["metrics"]
        repeat = int(self.get_argument("repeat", "10"))
        timings = {}
        for name, render in (("ours", metrics.exposition), ("library", lambda: generate_latest(metrics.registry))):
            samples = []
            for _ in range(repeat):
                began = time.process_time()
                render()
                samples.append((time.process_time() - began) * 1000)
            timings[name] = sorted(samples)[len(samples) // 2]
        self.write(timings)


def inject_seeded(service):
    """Give the dummy providers the live VMs found in the database (seeded by the benchmark)."""
    from sqlalchemy import select

    from vmpooler.db.models import vms
    from vmpooler.model import LIVE_STATES

    providers = service.manager.runner.providers
    pools = service.config.pools_by_name
    with service.db.read() as conn:
        rows = list(conn.execute(select(vms.c.name, vms.c.pool).where(vms.c.state.in_(LIVE_STATES))))
    known = {}  # a shared inventory file may hold them already (several processes, one backend)
    for name, pool in rows:
        provider = providers.get(pools[pool].provider) if pool in pools else None
        if provider is None or not hasattr(provider, "inject"):
            continue
        if id(provider) not in known:
            known[id(provider)] = provider.names()
        if name not in known[id(provider)]:
            provider.inject(pools[pool], name)
    return len(rows)


async def serve(mode, args):
    began = time.perf_counter()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(65536) or stopped.set())
    info = {"pid": os.getpid()}
    if mode == "floor":
        server = HTTPServer(postgres_app(args.pg) if args.pg else floor_app(args.db, args.promises))
        sockets = bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        info["port"] = sockets[0].getsockname()[1]
        service = None
    else:
        from vmpooler import config as config_module
        from vmpooler.app import Service
        from vmpooler.providers.registry import REGISTRY

        service = Service(config_module.load(args.config, os.environ, REGISTRY), role="api" if args.no_manager else "all")
        service.db.upgrade()  # start() does it too; the seeded VMs are read before
        if service.manager is not None:
            info["injected"] = inject_seeded(service)
            service.app.add_handlers(r".*", [(r"/_bench/tick", TickHandler, {}),
                                             (r"/_bench/in_flight", InFlightHandler, {})])
            service.app.settings["manager"] = service.manager
        if service.metrics.enabled:
            service.app.add_handlers(r".*", [(r"/_bench/exposition", ExpositionHandler, {})])
            service.app.settings["metrics"] = service.metrics
        await service.start("127.0.0.1", 0)
        info["port"] = service.port
    info["start_seconds"] = time.perf_counter() - began
    print(json.dumps(info), flush=True)
    await stopped.wait()
    if service is not None:
        await service.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("vmpooler", "floor"))
    parser.add_argument("config", nargs="?")
    parser.add_argument("--db", help="floor: the SQLite file of its checkout routes")
    parser.add_argument("--promises", action="store_true", help="floor: with the service's promises (issue 21)")
    parser.add_argument("--pg", help="floor: its routes on the PostgreSQL database at this URL")
    parser.add_argument("--no-manager", action="store_true", help="the API alone (a diagnostic: no refill)")
    args = parser.parse_args()
    setup_logging("INFO")  # as `vmpooler serve` logs (vmpooler/cli.py): to stderr, which the benchmark sends to a file
    asyncio.run(serve(args.mode, args))


if __name__ == "__main__":
    main()
