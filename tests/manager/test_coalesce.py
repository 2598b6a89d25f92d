"""The clones that end in one IOLoop turn are recorded in one transaction (manager/coalesce.py),
each VM still by its own guarded UPDATE with its events."""
import asyncio

from sqlalchemy import event

from tests.conftest import make_config, new_vm
from tests.manager.helpers import events, rows
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.manager.coalesce import Coalesced


def test_clones_ending_in_one_turn_share_one_transaction_and_each_keeps_its_guard(db):
    pool = make_config(pools=[{"name": "p", "template": "t", "size": 6}]).pools[0]
    ids = [new_vm(db, pool, f"vm{n}", utcnow()) for n in range(6)]
    given_up = vm_store.latest(db, "vm5")
    assert vm_store.complete(db, given_up, "given up while cloning", utcnow())
    cloning = [vm_store.latest(db, f"vm{n}") for n in range(5)] + [given_up]  # vm5 as read before it was given up
    commits = []
    event.listen(db.engine, "commit", lambda conn: commits.append(1))

    async def scenario():
        record = Coalesced(db, vm_store.cloned_many)
        now = utcnow()
        together = await asyncio.gather(*(record((vm, now, None, n % 2 == 0)) for n, vm in enumerate(cloning)))
        alone = await record((cloning[1], now, None, True))  # cloned already: no longer cloning
        return together, alone

    together, alone = asyncio.run(scenario())
    assert together == [True] * 5 + [False] and alone is False
    assert len(commits) == 2  # the six in one transaction, the late one in its own
    by_name = {row.name: row for row in rows(db) if row.id in ids}
    assert [by_name[f"vm{n}"].state for n in range(6)] == ["ready", "pending"] * 2 + ["ready", "completed"]
    assert all(by_name[f"vm{n}"].cloned_at is not None for n in range(5))
    assert [e.reason.split()[0] for e in events(db, "vm0")][-2:] == ["cloned", "booted"]
    assert not any(e.reason.startswith("cloned") for e in events(db, "vm5"))


def test_an_error_of_the_write_is_every_callers(db):
    def broken(db, items):
        raise RuntimeError("the write failed")

    async def scenario():
        record = Coalesced(db, broken)
        return await asyncio.gather(record(1), record(2), return_exceptions=True)

    assert [str(error) for error in asyncio.run(scenario())] == ["the write failed"] * 2
