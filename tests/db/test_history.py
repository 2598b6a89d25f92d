"""Ready and running counts over the past hour, rebuilt from the event log (db/history.py), on
SQLite and PostgreSQL, checked against a brute-force replay of the same timelines."""
import datetime

from sqlalchemy import event

from tests.conftest import make_config, new_ondemand_vms, new_vm
from vmpooler.db import events, history, ondemand
from vmpooler.db import stats as stat_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.model import RUNNING, AttemptKind, Retry

MINUTE = datetime.timedelta(minutes=1)


def live(db, vm_id):
    with db.read() as conn:
        return events.fetch(conn, vm_id)


def play(db, pool, name, timeline):
    """Walk a VM through ``timeline`` [(state, at)], starting pending, with the real transitions."""
    vm_id = new_vm(db, pool, name, timeline[0][1])
    for state, at in timeline[1:]:
        vm = live(db, vm_id)
        if state == "retry":  # an event from a state to itself changes no count
            assert vm_store.attempt_failed(db, vm, AttemptKind.CLONE, "simulated", at, Retry(vm.clone_attempts + 1, at))
        elif state == "cloned":
            assert vm_store.cloned(db, vm, at)
        elif state == "ready":
            assert vm_store.became_ready(db, vm, at)
        elif state == RUNNING:
            with db.write() as conn:
                assert events.change(conn, vm, RUNNING, "checked out (test)", at, checkout_at=at)
        else:
            assert vm_store.complete(db, vm, "done (test)", at)


def state_at(timeline, moment):
    """Brute force: the state a timeline is in at ``moment`` (its changes strictly before it)."""
    current = None
    for state, at in timeline:
        if at < moment and state not in ("retry", "cloned"):
            current = state
    return current


def test_history_replays_the_event_log(db):
    config = make_config()
    pool, other = config.pools_by_name["debian-7-i386"], config.pools_by_name["debian-7-x86_64"]
    end = utcnow().replace(microsecond=0)
    ago = lambda minutes, seconds=30: end - datetime.timedelta(minutes=minutes, seconds=seconds)  # noqa: E731
    timelines = {
        ("a", pool): [("pending", ago(55)), ("cloned", ago(52)), ("ready", ago(50))],
        ("b", pool): [("pending", ago(40)), ("ready", ago(30)), (RUNNING, ago(10))],
        ("c", pool): [("pending", ago(6)), ("retry", ago(5))],
        ("d", pool): [("pending", ago(80)), ("ready", ago(70))],
        ("f", pool): [("pending", ago(25)), ("ready", ago(20)), ("completed", ago(15))],
        ("g", other): [("pending", ago(90)), ("ready", ago(75)), (RUNNING, ago(33)), ("completed", ago(3))],
        ("h", other): [("pending", ago(59, 59)), ("ready", ago(59, 58)), (RUNNING, ago(0, 1))],
    }
    for (name, pool_config), timeline in timelines.items():
        play(db, pool_config, name, timeline)
    window = history.Window(end)
    counts = stat_store.pool_counts(db, end)
    past = history.state_history(db, window, counts)
    assert set(past) == {"debian-7-i386", "debian-7-x86_64"}
    assert window.start <= end - 59 * MINUTE and window.start.second == 0
    # the end of each step: whole minutes, the last step being the one under way
    ends = [window.start + (i + 1) * MINUTE for i in range(window.steps - 1)] + [end + MINUTE]
    for pool_name in past:
        for state in ("ready", RUNNING):
            expected = [sum(1 for (name, p), timeline in timelines.items()
                            if p.name == pool_name and state_at(timeline, moment) == state) for moment in ends]
            assert past[pool_name][state] == expected, (pool_name, state)
            assert expected[-1] == (counts[pool_name].ready if state == "ready" else counts[pool_name].running)
    # d alone an hour ago; d, a, b and f 17 minutes ago
    assert past["debian-7-i386"]["ready"][0] == 1 and max(past["debian-7-i386"]["ready"]) == 4


def test_a_pool_without_events_in_the_window_stays_flat(db):
    pool = make_config().pools_by_name["debian-7-i386"]
    end = utcnow().replace(microsecond=0)
    play(db, pool, "old", [("pending", end - 3 * 60 * MINUTE), ("ready", end - 2 * 60 * MINUTE)])
    past = history.state_history(db, history.Window(end), stat_store.pool_counts(db, end))
    assert past["debian-7-i386"] == {"ready": [1] * 60, RUNNING: [0] * 60}


def test_events_after_the_window_end_land_in_its_last_step(db):
    """The counts are read after ``end``: what changed since is in them and in the last step."""
    pool = make_config().pools_by_name["debian-7-i386"]
    end = utcnow().replace(microsecond=0) - 5 * MINUTE
    play(db, pool, "late", [("pending", end - 2 * MINUTE), ("ready", end + MINUTE)])
    past = history.state_history(db, history.Window(end), stat_store.pool_counts(db, utcnow()))
    assert past["debian-7-i386"]["ready"] == [0] * 59 + [1]


def test_the_cache_scans_the_window_once_and_adds_what_came_since(db):
    pool = make_config().pools_by_name["debian-7-i386"]
    end = utcnow()
    play(db, pool, "early", [("pending", end - 40 * MINUTE), ("ready", end - 30 * MINUTE)])
    scans = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: scans.append(statement) if "vm_events.at <" in statement
                 else None)
    cache = history.ChangeCache(ttl=60)

    def both():
        window = history.Window(utcnow())
        counts = stat_store.pool_counts(db, window.end)
        return history.state_history(db, window, counts, cache), history.state_history(db, window, counts)

    cached, fresh = both()
    assert cached == fresh and len(scans) == 1
    now = utcnow()
    play(db, pool, "late", [("pending", now), ("ready", now)])
    play(db, pool, "taken", [("pending", now), ("ready", now), (RUNNING, now)])
    cached, fresh = both()
    assert cached == fresh and len(scans) == 1, "the window was scanned again within the ttl"
    assert cached["debian-7-i386"]["ready"][-1] == 2 and cached["debian-7-i386"][RUNNING][-1] == 1
    cache.ttl = datetime.timedelta(0)
    assert both()[0] == fresh and len(scans) == 2



def test_on_demand_vms_waiting_in_ready_are_not_the_pools_ready_vms(db):
    """A VM cloned for an on-demand request waits in ``ready`` until the whole request is handed
    over, but no checkout can take it: /status (stats.pool_counts) counts it as pending, so the
    ready history leaves it out at every step, as it did when that step was now. Running counts
    it once handed over, as /status does."""
    pool = make_config().pools_by_name["debian-7-i386"]
    end = utcnow().replace(microsecond=0)
    ago = lambda minutes: end - datetime.timedelta(minutes=minutes, seconds=30)  # noqa: E731
    play(db, pool, "stock", [("pending", ago(52)), ("ready", ago(50))])
    # request r1: two VMs, ready 25 and 20 minutes ago, handed over 10 minutes ago
    first = new_ondemand_vms(db, "r1", pool, 2, ago(30))
    for vm_id, at in zip(first, (ago(25), ago(20))):
        assert vm_store.cloned(db, live(db, vm_id), at) and vm_store.became_ready(db, live(db, vm_id), at)
    assert ondemand.hand_over(db, ondemand.find(db, "r1"), ago(10), 12, None)
    # request r2: one VM ready 2 minutes ago, its sibling still cloning
    waiting, _sibling = new_ondemand_vms(db, "r2", pool, 2, ago(4))
    assert vm_store.cloned(db, live(db, waiting), ago(2)) and vm_store.became_ready(db, live(db, waiting), ago(2))

    counts = stat_store.pool_counts(db, end)
    assert (counts[pool.name].ready, counts[pool.name].ondemand, counts[pool.name].running) == (1, 2, 2)
    window = history.Window(end)
    past = history.state_history(db, window, counts)[pool.name]
    ends = [window.start + (i + 1) * MINUTE for i in range(window.steps - 1)] + [end + MINUTE]
    # ready: the stock VM alone, from the moment it became ready; running: r1's two VMs
    assert past["ready"] == [int(moment > ago(50)) for moment in ends] and past["ready"][-1] == 1
    assert past[RUNNING] == [2 * (moment > ago(10)) for moment in ends]
