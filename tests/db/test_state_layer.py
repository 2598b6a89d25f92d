"""The state layer under concurrency: guarded transitions make every race have one winner."""
import collections
import datetime
import threading

import pytest
from sqlalchemy import event

from tests.conftest import add_vm, make_config, new_vm
from tests.manager.helpers import events, rows
from vmpooler.db import stats
from vmpooler.db import checkout as checkout_store
from vmpooler.db import client_changes
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.db.checkout import Owner, Shortfall, Want
from vmpooler.model import AttemptKind, Retry


@pytest.fixture
def pool():
    return make_config(pools=[{"name": "p", "template": "t", "size": 20},
                              {"name": "q", "template": "t", "size": 5}]).pools


def _checkout(db, wants):
    return checkout_store.checkout(db, wants, utcnow(), 24)


def test_fifty_threads_checking_out_twenty_vms_get_each_exactly_once(db, pool):
    for _ in range(20):
        add_vm(db, pool[0], "ready")
    barrier = threading.Barrier(50)
    won, lost, errors = [], [], []

    def client():
        barrier.wait()
        try:
            won.append(_checkout(db, [Want("p", ("p",), 1)])["p"][0])
        except Shortfall:
            lost.append(1)
        except Exception as error:  # anything else is a bug
            errors.append(error)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(won) == 20 and len(set(won)) == 20
    assert len(lost) == 30
    assert {r.state for r in rows(db)} == {"running"}
    # one event per checkout, never two for the same VM
    assert sum(e.to_state == "running" for e in events(db)) == 20


def test_checkout_is_all_or_nothing(db, pool):
    add_vm(db, pool[0], "ready")
    add_vm(db, pool[0], "ready")
    add_vm(db, pool[1], "ready")
    with pytest.raises(Shortfall):
        _checkout(db, [Want("p", ("p",), 2), Want("q", ("q",), 2)])
    assert {r.state for r in rows(db)} == {"ready"}
    assert not any(e.to_state == "running" for e in events(db))
    taken = _checkout(db, [Want("p", ("p",), 2), Want("q", ("q",), 1)])
    assert len(taken["p"]) == 2 and len(taken["q"]) == 1


def test_checkout_records_owner_lifetime_and_expiry(db, pool):
    add_vm(db, pool[0], "ready")
    now = utcnow()
    checkout_store.checkout(db, [Want("p", ("p",), 1)], now, 24, Owner("h" * 64, "jdoe"), owner_lifetime=2)
    vm = rows(db)[0]
    assert (vm.token_user, vm.token_hash, vm.lifetime) == ("jdoe", "h" * 64, 2)
    assert round((vm.expires_at - vm.checkout_at).total_seconds()) == 7200


def test_manager_and_client_racing_on_one_vm_have_one_winner(db, pool):
    name = add_vm(db, pool[0], "ready")
    stale = rows(db, name=name)[0]  # what the manager read before the checkout
    assert [vm.name for vm in _checkout(db, [Want("p", ("p",), 1)])["p"]] == [name]
    assert vm_store.complete(db, stale, "ready_ttl", utcnow()) is False
    assert rows(db, name=name)[0].state == "running"


def test_delete_twice_changes_state_once(db, pool):
    name = add_vm(db, pool[0], "running")
    vm = rows(db, name=name)[0]
    completed = client_changes.delete(db, vm, utcnow())
    assert completed is not None and completed.state == "completed" and completed.id == vm.id
    assert completed == rows(db, name=name)[0]  # the row as the database holds it now
    assert client_changes.delete(db, vm, utcnow()) is None
    assert [e.to_state for e in events(db, name)].count("completed") == 1


def test_a_live_hostname_cannot_be_used_twice_but_can_after_destroy(db, pool):
    name = add_vm(db, pool[0], "ready")
    assert new_vm(db, pool[0], name, utcnow()) is None
    vm = rows(db, name=name)[0]
    vm_store.complete(db, vm, "test", utcnow())
    vm_store.destroyed(db, rows(db, name=name)[0], utcnow())
    assert new_vm(db, pool[0], name, utcnow()) is not None


def test_a_destroyed_vms_name_stays_reserved_for_the_given_hours(db, pool):
    name = add_vm(db, pool[0], "ready")
    vm_store.complete(db, rows(db, name=name)[0], "test", utcnow())
    vm_store.destroyed(db, rows(db, name=name)[0], utcnow())
    assert new_vm(db, pool[0], name, utcnow(), reserve_hours=1) is None
    assert new_vm(db, pool[0], "another", utcnow(), reserve_hours=1) is not None


def test_cached_reads_are_reused_until_the_next_write(db, pool):
    loads = []

    def load(conn):
        loads.append(1)
        return len(rows(db))

    assert db.cached("count", load) == 0 and db.cached("count", load) == 0
    if not db.is_sqlite:  # shared by several processes: another's write would not invalidate it
        assert len(loads) == 2
        return
    assert len(loads) == 1  # the second read came from the cache
    add_vm(db, pool[0], "ready")  # writes: the cached count is stale now
    assert db.cached("count", load) == 1 and len(loads) == 2


def test_every_change_of_a_vm_row_has_an_event(db, pool):
    """Retries, waits for a breaker and a new address are events; a periodic check alone is not."""
    name = add_vm(db, pool[0], "pending")
    vm = rows(db, name=name)[0]
    later = utcnow() + datetime.timedelta(seconds=5)
    assert vm_store.attempt_failed(db, vm, AttemptKind.CLONE, "boom", utcnow(), Retry(1, later))
    vm = rows(db, name=name)[0]
    assert vm_store.attempt_failed(db, vm, AttemptKind.CLONE, "breaker open", utcnow(),
                                   Retry(1, later, waits_for_breaker=True))
    vm = rows(db, name=name)[0]
    assert vm.clone_attempts == 1 and vm.last_error == "breaker open"
    assert client_changes.modify(db, vm, utcnow(), tags={"user": "x"})
    reasons = [e.reason for e in events(db, name)]
    assert reasons[1:] == ["clone attempt 1 failed, retrying: boom",
                           f"clone waits for the provider's circuit breaker until {later:%H:%M:%S}",
                           "tag user: (none) -> 'x'"]
    ready = add_vm(db, pool[0], "ready")
    vm = rows(db, name=ready)[0]
    before = len(events(db, ready))
    assert vm_store.checked(db, vm, utcnow())
    assert len(events(db, ready)) == before
    assert vm_store.checked(db, rows(db, name=ready)[0], utcnow(), ip="10.0.0.9")
    assert events(db, ready)[-1].reason == f"address {vm.ip or '(none)'} -> 10.0.0.9"
    assert rows(db, name=ready)[0].ip == "10.0.0.9"


def test_pool_counts_are_a_typed_value(db, pool):
    for state in ("pending", "ready", "ready", "running"):
        add_vm(db, pool[0], state)
    counts = stats.pool_counts(db, utcnow())
    assert isinstance(counts["p"], stats.PoolCounts) and "q" not in counts
    assert (counts["p"].pending, counts["p"].cloning, counts["p"].ready, counts["p"].running) == (1, 1, 2, 1)
    assert counts["p"].stock == 3 and counts["p"].clone_slots == 1
    assert stats.PoolCounts.total([counts["p"], counts["p"]]).ready == 4
    assert stats.stock_counts(db, utcnow())["p"].running == 0  # the manager's count reads only pending and ready


def test_the_vm_row_type_declares_every_column(db, pool):
    """model.VMRow (what mypy checks the state layer's VM rows against) has one attribute per
    column of the vms table, and a row read back has them all."""
    import typing
    from vmpooler.db.models import vms as vm_table
    from vmpooler.model import VMRow
    declared = list(typing.get_type_hints(VMRow))
    assert declared == [column.name for column in vm_table.columns]
    row = rows(db, name=add_vm(db, pool[0], "ready"))[0]
    assert all(hasattr(row, name) for name in declared)
def test_what_went_wrong_is_logged_above_info_and_normal_life_at_info(db, caplog):
    """A clone given up (a template that does not exist, say) costs a VM: WARNING; a destroy given
    up leaves one behind: ERROR; a VM retired for a timeout or a failed check: WARNING; a delete: INFO."""
    pool = make_config().pools[0]
    now = utcnow()
    with caplog.at_level("INFO", logger="vmpooler"):
        clone = vm_store.latest(db, add_vm(db, pool, "pending"))
        assert vm_store.attempt_failed(db, clone, AttemptKind.CLONE, "template templates/nope not found", now,
                                       Retry(1, None))
        destroy = vm_store.latest(db, add_vm(db, pool, "ready"))
        assert vm_store.complete(db, destroy, "deleted by the client", now)
        destroy = vm_store.latest(db, destroy.name)
        assert vm_store.attempt_failed(db, destroy, AttemptKind.DESTROY, "the vCenter refused", now, Retry(3, None))
        timed_out = vm_store.latest(db, add_vm(db, pool, "pending"))
        assert vm_store.complete(db, timed_out, "still pending after 15 minutes: its port 22 never opened", now,
                                 error="timed out")
    levels = {record.getMessage().split(": ", 2)[-1]: record.levelname for record in caplog.records}
    assert levels["clone failed 1 times, giving up: template templates/nope not found"] == "WARNING"
    assert levels["deleted by the client"] == "INFO"
    assert levels["destroy failed 3 times, giving up: the vCenter refused"] == "ERROR"
    assert levels["still pending after 15 minutes: its port 22 never opened"] == "WARNING"


def test_a_booting_vms_failed_dns_record_is_a_clone_attempt_guarded_as_pending(db, pool):
    """A VM already cloned (booting) whose DNS record could not be made: the attempt is recorded
    on the pending row (not refused as "no longer cloning"), and giving up completes it."""
    name = new_vm(db, pool[0], "vm-booting", utcnow())
    vm = rows(db, name="vm-booting")[0]
    assert vm_store.cloned(db, vm, utcnow(), "192.0.2.1")
    assert not vm_store.attempt_failed(db, vm, AttemptKind.CLONE, "dns down", utcnow(), Retry(1, utcnow()))  # the clone is done
    later = utcnow() + datetime.timedelta(seconds=5)
    assert vm_store.attempt_failed(db, vm, AttemptKind.CLONE, "dns down", utcnow(), Retry(1, later), booting=True)
    vm = rows(db, name="vm-booting")[0]
    assert (vm.state, vm.clone_attempts, vm.next_attempt_at is not None, vm.cloned_at is not None) == \
        ("pending", 1, True, True)
    assert vm_store.attempt_failed(db, vm, AttemptKind.CLONE, "REFUSED", utcnow(), Retry(2, None), booting=True)
    vm = rows(db, name="vm-booting")[0]
    assert vm.state == "completed" and vm.last_error == "REFUSED" and name is not None
    assert events(db, "vm-booting")[-1].reason == "clone failed 2 times, giving up: REFUSED"


def test_a_vm_is_read_with_its_tags_and_tasks_as_one_consistent_answer(db, pool):
    """GET /vm/<host>'s read: on PostgreSQL one statement (tags and tasks aggregated as JSON),
    which must give what the three statements of the SQLite read give, timestamps included."""
    from vmpooler.db import tasks as task_store
    from vmpooler.db.vms import _latest_with_extras
    TaskId = collections.namedtuple("TaskId", "id")
    name = add_vm(db, pool[0], "running")
    vm = vm_store.latest(db, name)
    now = utcnow()
    assert client_changes.modify(db, vm, now, tags={"project": "one", "url": "http://x/ü"})
    done = task_store.queue(db, vm, "snapshot", "s1", now)
    assert task_store.claim(db, done) and task_store.finish(db, done, now + datetime.timedelta(seconds=1))
    broken = task_store.queue(db, vm, "disk", "8", now)
    assert task_store.claim(db, broken)
    retry_at = now + datetime.timedelta(minutes=1)
    assert task_store.failed(db, TaskId(broken), "no space", now, Retry(1, retry_at))

    row, extras = vm_store.latest_with_extras(db, name)
    with db.read() as conn:
        expected_row, expected = _latest_with_extras(conn, name)
    assert row.id == expected_row.id and row.state == "running" and row.checkout_at == expected_row.checkout_at
    assert extras.tags == expected.tags == {"project": "one", "url": "http://x/ü"}
    assert extras.snapshots == ["s1"] and extras.disks == []
    assert [tuple(task) for task in extras.tasks] == [tuple(task) for task in expected.tasks]
    assert extras.tasks[1].next_attempt_at == retry_at and extras.tasks[0].finished_at is not None
    assert vm_store.latest_with_extras(db, "nobody") == (None, None)
    assert vm_store.TaskRow._fields == vm_store.statements.TASK_COLUMNS  # the JSON's columns, in order


def test_a_one_statement_read_runs_outside_a_transaction(db, pool):
    """GET /vm/<host>, DELETE's lookup and the manager's reads are one statement each: no BEGIN
    nor COMMIT around them (on PostgreSQL two round trips of three), and the answer is the same."""
    name = add_vm(db, pool[0], "ready")
    sent = []
    event.listen(db.engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: sent.append(sql.split()[0]))
    assert vm_store.latest(db, name).state == "ready"
    assert vm_store.pending(db) == [] and stats.stock_counts(db, utcnow())["p"].ready == 1
    assert sent == ["SELECT"] * 3
    with db.one_statement() as conn:
        vm_store.statements.LATEST.first(conn, {"name": name})
        assert not conn.in_transaction()
        assert db.is_sqlite or conn.connection.dbapi_connection.autocommit
