"""A retried clone whose VM exists already (an earlier attempt made it, and its answer was lost:
the database could not record it) is adopted when the VM is the clone asked for, and the
provider's circuit breaker is not charged for it (issue 18 item 1)."""
import asyncio

from sqlalchemy import event

from tests.manager.helpers import events, fast_config, rows, running, states, wait_for
from vmpooler.providers.registry import REGISTRY

POOL = {"name": "a", "template": "t", "size": 1}
#: no reconcile during the test: it would take the VM as cloned before the clone is retried
SETTINGS = {"reconcile_interval": 600}


def _lose_the_first_clone_record(db):
    """The database fails the first write that records a clone as done (a blip: the driver's own
    OperationalError, as a dropped connection raises it)."""
    failed = []

    def blip(_conn, _cursor, statement, *_args):
        if not failed and statement.startswith("UPDATE vms") and "cloned_at" in statement:
            failed.append(statement)
            raise db.engine.dialect.loaded_dbapi.OperationalError("the database went away (test)")

    event.listen(db.engine, "before_cursor_execute", blip)
    return failed


def test_a_clone_whose_record_was_lost_is_adopted_when_retried(db):
    config = fast_config([POOL], settings=SETTINGS)
    failed = _lose_the_first_clone_record(db)

    async def scenario():
        async with running(config, db) as (manager, _dummy):
            await wait_for(lambda: states(db).get("ready") == 1, what="the pool full")
            return manager.runner.breakers["dummy"].describe()

    breaker = asyncio.run(scenario())
    assert failed, "no clone record failed: the test proves nothing"
    assert breaker == {"state": "closed", "failures": 0}
    assert [(vm.state, vm.clone_attempts) for vm in rows(db)] == [("ready", 0)]
    assert not any("exists already" in e.reason for e in events(db))


def test_a_vm_of_that_name_from_another_template_is_not_adopted(db):
    config = fast_config([POOL], settings={**SETTINGS, "clone_attempts": 1})
    providers = REGISTRY.build(config)
    dummy, pool = providers["dummy"], config.pools[0]
    stranger = pool.__class__(**{**pool.__dict__, "template": "another-template"})
    create_vm, taken = dummy.create_vm, []

    def someone_else_first(pool, name):
        """Another actor makes a VM of the name (from another template) just before our clone."""
        if not taken:
            taken.append(name)
            create_vm(stranger, name)
        return create_vm(pool, name)

    dummy.create_vm = someone_else_first

    async def scenario():
        async with running(config, db, providers) as (manager, _dummy):
            await wait_for(lambda: taken and any("exists already" in e.reason for e in events(db, taken[0])),
                           what="the clone refused")
            await wait_for(lambda: states(db).get("ready") == 1, what="a replacement ready")
            return manager.runner.breakers["dummy"].describe()

    breaker = asyncio.run(scenario())
    assert breaker["failures"] == 0  # an answer of a working backend, not a failure of it
    assert rows(db, name=taken[0])[0].state != "ready"
