"""Fixtures shared by every test: a fresh database, configurations, and ready-made VMs."""
import itertools
import logging
import os

import pytest
from sqlalchemy import text

from vmpooler import config as config_module
from vmpooler.db import events, ondemand
from vmpooler.db import checkout as checkout_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import Database, utcnow
from vmpooler.db.models import metadata
from vmpooler.providers.registry import REGISTRY

_names = itertools.count()


def make_config(pools=None, settings=None, **sections):
    """A validated Config: dummy provider, the given pools (default: the two example pools)."""
    raw = {"providers": sections.pop("providers", {"dummy": {}}),
           "pools": pools if pools is not None else [
               {"name": "debian-7-i386", "template": "debian-7-i386", "size": 5},
               {"name": "debian-7-x86_64", "template": "debian-7-x86_64", "size": 3}],
           "config": {"status_cache_seconds": 0, **(settings or {})}}
    raw.update(sections)
    return config_module.build(raw, {"VMPOOLER_DEBUG": "1"}, REGISTRY)


#: the databases the state layer's tests run on: SQLite always, and PostgreSQL when
#: $VMPOOLER_TEST_POSTGRES_URL names one (scripts/test.sh starts one and sets it), so that the code
#: stays portable to it
DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("VMPOOLER_TEST_POSTGRES_URL") else [])


@pytest.fixture(params=DATABASES)
def db(request, tmp_path):
    """A fresh, upgraded database: an SQLite file, or the emptied PostgreSQL database."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'vmpooler.db'}")
    else:
        database = Database(os.environ["VMPOOLER_TEST_POSTGRES_URL"])
        with database.engine.begin() as conn:  # what the previous test left
            metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    database.upgrade()
    yield database
    database.dispose()


def new_vm(db, pool, name, now, reserve_hours=0):
    """Record one clone about to start, as replenish does; its id, or None when the name is taken."""
    created = vm_store.new_vms(db, [(pool, name)], now, reserve_hours)
    return created[0].id if created else None


def new_ondemand_vms(db, request_id, pool, count, now) -> list:
    """Record an on-demand request for ``count`` VMs of ``pool`` and its VMs about to be cloned,
    as the API and the manager do; the VMs' ids."""
    ondemand.create(db, request_id, [(pool.name, pool.name, count)], now)
    request = ondemand.find(db, request_id)
    wanted = [(pool, f"{request_id}-{n}", request.wants[0].id) for n in range(count)]
    return [vm.id for vm in ondemand.add_vms(db, request, wanted, now, 0)]


def add_vm(db, pool, state="ready", name=None):
    """Put a VM into ``state`` (pending, ready, running) through the real vm_store."""
    name = name or f"vm{next(_names):05d}"
    vm_id = new_vm(db, pool, name, utcnow())
    if state == "pending":
        return name
    vm_store.cloned(db, _row(db, vm_id), utcnow())
    vm_store.became_ready(db, _row(db, vm_id), utcnow())
    if state == "running":
        now = utcnow()
        with db.write() as conn:
            events.change(conn, events.fetch(conn, vm_id), "running", "checked out (test)", now,
                          checkout_at=now, expires_at=checkout_store.expiry(now, 24))
    return name


def _row(db, vm_id):
    with db.read() as conn:
        return events.fetch(conn, vm_id)


class FakeClock:
    """A clock for the time-based pieces (rate limiter, circuit breaker): ``now`` is set by hand."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _quiet_sqlalchemy():
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
