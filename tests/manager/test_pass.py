"""A manager pass reads what it needs once: the pending VMs, which both checks and replenish go
through, are one query per pass, handed to the loops (scheduler.Pass)."""
import asyncio
import datetime

from sqlalchemy import event, select

from tests.conftest import add_vm
from tests.manager.helpers import fast_config, rows, running, wait_for
from vmpooler.db import idempotency
from vmpooler.db.database import utcnow
from vmpooler.db.models import idempotency_keys
from vmpooler.db import vm_statements as statements
from vmpooler.manager.scheduler import Manager
from vmpooler.providers.registry import REGISTRY


def test_each_pass_reads_the_pending_vms_once(db):
    # a slow boot keeps VMs pending (checks probes them) and a failing clone keeps some cloning
    # (replenish retries them): both loops go through the pending rows on every pass
    config = fast_config([{"name": "a", "template": "t", "size": 4}], dummy={"boot_max_time": 3600})
    pool = config.pools[0]
    for _ in range(2):
        add_vm(db, pool, "pending")
    reads = []

    pending_read = statements.PENDING_VMS.statement.compile(dialect=db.engine.dialect).string

    def count(_conn, _cursor, statement, *_args):
        if statement == pending_read:
            reads.append(statement)
    event.listen(db.engine, "before_cursor_execute", count)

    async def scenario():
        manager = Manager(config, db, REGISTRY.build(config))
        for passes in range(1, 4):
            await manager.run_pass()
            assert len(reads) == passes
            await asyncio.sleep(0.05)
        await manager.stop()
    try:
        asyncio.run(scenario())
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len([r for r in rows(db) if r.state == "pending"]) == 4




def test_the_manager_purges_expired_idempotency_keys(db):
    with db.write() as conn:
        idempotency.remember(conn, idempotency.Key("", "gone", "f", datetime.timedelta(seconds=-1)), 200, {}, utcnow())

    def keys():
        with db.read() as conn:
            return list(conn.execute(select(idempotency_keys)))

    async def scenario():
        async with running(fast_config([{"name": "a", "template": "t", "size": 1}]), db):
            await wait_for(lambda: not keys(), what="the expired key purged")

    asyncio.run(scenario())
