"""Running the pool manager for real on the dummy provider, with millisecond timers."""
import asyncio
import contextlib
import time

from sqlalchemy import select

from tests.conftest import make_config
from vmpooler.db.models import vm_events, vms
from vmpooler.manager.scheduler import Manager
from vmpooler.providers.registry import REGISTRY

FAST = {"check_loop_delay_min": 0.01, "vm_checktime": 0.0005, "retry_backoff": 0.01, "retry_backoff_max": 0.05,
        "reconcile_interval": 0.05, "shutdown_grace": 2}


def fast_config(pools, settings=None, dummy=None, **sections):
    sections.setdefault("providers", {"dummy": dict(dummy or {})})
    return make_config(pools=pools, settings={**FAST, **(settings or {})}, **sections)


@contextlib.asynccontextmanager
async def running(config, db, providers=None):
    """A started manager; stopped (cleanly) on exit. Yields (manager, dummy provider)."""
    providers = providers or REGISTRY.build(config)
    manager = Manager(config, db, providers)
    await manager.start()
    try:
        yield manager, providers["dummy"]
    finally:
        await manager.stop()


async def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def states(db, pool=None):
    """{state: count} of the VMs (of one pool)."""
    with db.read() as conn:
        query = select(vms.c.state, vms.c.pool)
        result = {}
        for state, vm_pool in conn.execute(query):
            if pool is None or vm_pool == pool:
                result[state] = result.get(state, 0) + 1
        return result


def rows(db, **where):
    with db.read() as conn:
        query = select(vms)
        for column, value in where.items():
            query = query.where(vms.c[column] == value)
        return list(conn.execute(query.order_by(vms.c.id)))


def events(db, name=None):
    with db.read() as conn:
        query = select(vm_events).order_by(vm_events.c.id)
        if name:
            query = query.where(vm_events.c.vm_name == name)
        return list(conn.execute(query))
