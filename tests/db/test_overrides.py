"""The state layer of run-time pool configuration: effective pools, changes with their events,
undo, drains, and concurrent changes of one pool (on SQLite and PostgreSQL)."""
import concurrent.futures

from tests.conftest import add_vm, make_config
from vmpooler.db import overrides
from vmpooler.db.database import utcnow
from vmpooler.db.models import vm_events
from vmpooler.model import COMPLETED, RUNNING

POOLS = [{"name": "a", "template": "t/a", "size": 2}, {"name": "b", "template": "t/b", "size": 1}]
WHO = overrides.Actor("jdoe", "10.0.0.1")


def test_effective_pools_apply_overrides_and_leave_the_configuration_alone(db):
    config = make_config(POOLS)
    assert overrides.effective_pools(db, config.pools) == config.pools
    assert overrides.change_setting(db, config.pools_by_name, "size", {"a": 0, "b": 1}, WHO, utcnow()) == ["a"]
    assert overrides.change_setting(db, config.pools_by_name, "template", {"b": "t/new"}, WHO, utcnow()) == ["b"]
    a, b = overrides.effective_pools(db, config.pools)
    assert (a.size, a.raw["size"], b.template, b.raw["template"]) == (0, 0, "t/new", "t/new")
    assert config.pools_by_name["a"].size == 2 and config.pools_by_name["b"].template == "t/b"
    assert set(overrides.pending_drains(db)) == {"b"}  # a template change drains; a size change does not


def test_setting_the_configured_value_again_removes_the_override(db):
    config = make_config(POOLS)
    overrides.change_setting(db, config.pools_by_name, "size", {"a": 5}, WHO, utcnow())
    assert overrides.overrides(db) == {"a": {"size": 5}}
    assert overrides.change_setting(db, config.pools_by_name, "size", {"a": 2}, WHO, utcnow()) == ["a"]
    assert overrides.overrides(db) == {}
    assert [(e.action, e.before, e.after) for e in overrides.events(db, "a")] == [("set size", "2", "5"),
                                                                                ("set size", "5", "2")]


def test_undo(db):
    config = make_config(POOLS)
    pool = config.pools_by_name["a"]
    assert overrides.undo(db, pool, "template", WHO, utcnow()) == ("t/a", "t/a", False)
    overrides.change_setting(db, config.pools_by_name, "template", {"a": "t/x"}, WHO, utcnow())
    drain = overrides.pending_drains(db)["a"]
    assert overrides.undo(db, pool, "template", WHO, utcnow()) == ("t/x", "t/a", True)
    assert overrides.effective_pools(db, config.pools)[0].template == "t/a"
    assert overrides.pending_drains(db)["a"].requested_at >= drain.requested_at  # replaced, still one


def test_drain_completes_ready_and_pending_vms_with_events_and_closes_the_request(db):
    config = make_config(POOLS)
    a, b = config.pools
    ready, pending, running = add_vm(db, a, "ready"), add_vm(db, a, "pending"), add_vm(db, a, "running")
    other = add_vm(db, b, "ready")
    overrides.request_reset(db, ["a"], WHO, utcnow())
    request = overrides.pending_drains(db)["a"]
    assert overrides.drain(db, "a", request, utcnow()) == 2
    assert overrides.drain(db, "a", request, utcnow()) is None  # closed: a second pass does nothing
    assert overrides.pending_drains(db) == {}
    with db.read() as conn:
        last = {e.vm_name: e for e in conn.execute(vm_events.select().order_by(vm_events.c.id))}
    assert last[ready].to_state == COMPLETED and last[pending].to_state == COMPLETED
    assert last[ready].reason == "drained: pool reset"
    assert last[running].to_state == RUNNING and last[other].to_state != COMPLETED
    assert [e.action for e in overrides.events(db, "a")] == ["reset", "drain"]


def test_a_replaced_drain_request_is_left_for_the_next_pass(db):
    config = make_config(POOLS)
    overrides.request_reset(db, ["a"], WHO, utcnow())
    old = overrides.pending_drains(db)["a"]
    overrides.change_setting(db, config.pools_by_name, "template", {"a": "t/y"}, WHO, utcnow())
    assert overrides.drain(db, "a", old, utcnow()) is None
    assert "template changed" in overrides.pending_drains(db)["a"].reason


def test_concurrent_changes_of_one_pool_all_succeed(db):
    config = make_config(POOLS)

    def flip(worker):
        for round_ in range(15):
            size = 3 + (worker + round_) % 2
            overrides.change_setting(db, config.pools_by_name, "size", {"a": size}, WHO, utcnow())
            overrides.change_setting(db, config.pools_by_name, "clone_target", {"a": f"c{round_ % 3}"}, WHO, utcnow())
        return True

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(flip, range(4)))
    found = overrides.overrides(db)["a"]
    assert found["size"] in (3, 4) and found["clone_target"] in ("c0", "c1", "c2")
