"""Leadership: one holder of the manager lease at a time, takeover after expiry, local fencing."""
import asyncio
import sqlite3
import threading

import pytest

from vmpooler.db import leases
from vmpooler.db.database import Database
from vmpooler.manager.leader import LEASE_NAME, Leadership
from tests.conftest import FakeClock


def run(coroutine):
    return asyncio.new_event_loop().run_until_complete(coroutine)


def test_one_leader_and_a_clean_handover(db):
    first, second = Leadership(db, holder="a"), Leadership(db, holder="b")
    assert run(first.campaign_once()) and not run(second.campaign_once())
    assert run(first.campaign_once())  # a renewal keeps the term
    assert first.epoch == 1
    run(first.stop())
    assert not first.is_leader
    assert run(second.campaign_once()) and second.epoch == 2
    assert leases.current(db, LEASE_NAME).holder == "b"


def test_an_expired_lease_is_taken_over_and_its_old_holder_knows(db):
    clock = FakeClock()
    hung = Leadership(db, lease_seconds=0.3, holder="hung", clock=clock)
    assert run(hung.campaign_once())
    waiting = Leadership(db, lease_seconds=0.3, holder="next")
    assert not run(waiting.campaign_once())
    threading.Event().wait(0.35)  # the hung process renews nothing: its lease runs out in the database
    clock.now += 0.35
    assert not hung.is_leader  # fenced by its own clock, before anyone else could take over
    assert run(waiting.campaign_once()) and waiting.epoch == 2
    assert not run(hung.campaign_once())  # back from its pause, it finds the lease taken


def test_fencing_ends_leadership_before_the_lease_expires_in_the_database(db):
    clock = FakeClock(100.0)
    leader = Leadership(db, lease_seconds=5, holder="a", clock=clock)
    assert run(leader.campaign_once())
    clock.now += 5 - leader.margin - 0.01
    assert leader.is_leader
    clock.now += 0.02
    assert not leader.is_leader


class JumpingClock(FakeClock):
    """Each reading comes ``jump`` seconds after the previous one: a slow database call."""

    jump = 0.0

    def __call__(self) -> float:
        self.now += self.jump
        return self.now


def test_a_renewal_that_returns_too_late_does_not_count(db):
    clock = JumpingClock(100.0)
    leader = Leadership(db, lease_seconds=5, holder="a", clock=clock)
    clock.jump = 4.5  # the database answered after most of the lease was gone
    assert not run(leader.campaign_once())
    clock.jump = 0.0
    assert run(leader.campaign_once())


def test_listeners_hear_gain_and_loss_once_each(db):
    clock = FakeClock()
    heard = []
    leader = Leadership(db, lease_seconds=5, holder="a", clock=clock)
    leader.on_change(heard.append)
    run(leader.campaign_once())
    run(leader.campaign_once())
    run(leader.stop())
    assert heard == [True, False]


@pytest.mark.parametrize("contenders", [8])
def test_contenders_racing_for_a_free_lease_get_one_holder(db, contenders):
    barrier = threading.Barrier(contenders)
    results = {}

    def contend(name):
        barrier.wait()
        results[name] = leases.hold(db, LEASE_NAME, name, 5)

    threads = [threading.Thread(target=contend, args=(f"p{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [name for name, epoch in results.items() if epoch is not None]
    assert len(results) == contenders and len(winners) == 1
    assert leases.current(db, LEASE_NAME).holder == winners[0]


def test_renewing_the_lease_keeps_the_read_cache(db):
    """The lease is renewed every few seconds; a renewal changes no row a cached read shows, so it
    must not empty the cache (GET /vm/<host> would then read the database for every host after
    every renewal). A VM change still does."""
    if not db.is_sqlite:
        pytest.skip("the read cache is kept on SQLite only (one process owns the file)")
    loads = []

    def cached_read():
        return db.cached(("test", 1), lambda conn: loads.append(1) or len(loads))

    assert leases.hold(db, LEASE_NAME, "a", 5) is not None
    first = cached_read()
    for _ in range(3):
        assert leases.hold(db, LEASE_NAME, "a", 5) is not None
        assert cached_read() == first
    assert leases.release(db, LEASE_NAME, "a", leases.current(db, LEASE_NAME).epoch)
    assert cached_read() == first and len(loads) == 1
    with db.write():
        pass  # any other write transaction
    assert cached_read() == 2


def test_taking_and_giving_up_the_lease_is_normal_life_and_losing_it_a_warning(tmp_path, caplog):
    db = Database(f"sqlite:///{tmp_path / 'lease.db'}", busy_timeout_ms=100)
    db.upgrade()
    with caplog.at_level("INFO", logger="vmpooler"):
        leader = Leadership(db, lease_seconds=5, holder="first")
        assert run(leader.campaign_once())  # every normal start
        blocker = sqlite3.connect(tmp_path / "lease.db")
        blocker.execute("BEGIN EXCLUSIVE")  # the database cannot take the renewal: the term is lost
        assert not run(leader.campaign_once())
        blocker.rollback()
        assert run(leader.campaign_once())  # a term won back
        run(leader.stop())  # a clean stop gives the lease up
    db.dispose()
    said = [(record.levelname, record.getMessage().split(" ", 2)[2].split(" the pool")[0])
            for record in caplog.records if record.getMessage().startswith("leadership: first")]
    assert said == [("INFO", "now runs"), ("WARNING", "no longer runs"), ("INFO", "now runs"),
                    ("INFO", "no longer runs")], said


def test_a_lease_that_lapsed_during_a_pause_is_logged_and_the_term_ended(db, caplog):
    """Paused past its lease (the clock jumps as after SIGSTOP): the next campaign logs that the
    lease lapsed and tells the listeners the term ended, even though it takes the lease straight
    back (nobody else wanted it), so the new term starts afresh (the manager reconciles)."""
    clock = FakeClock(100.0)
    leader = Leadership(db, lease_seconds=1, holder="paused", clock=clock)
    heard = []
    leader.on_change(heard.append)
    assert run(leader.campaign_once()) and heard == [True]
    threading.Event().wait(1.05)  # the lease runs out in the database too
    clock.now += 3
    caplog.set_level("WARNING", logger="vmpooler.manager")
    assert run(leader.campaign_once())
    assert heard == [True, False, True]
    lapsed = [record.getMessage() for record in caplog.records if "lapsed" in record.getMessage()]
    assert len(lapsed) == 1 and "paused stopped" not in lapsed[0] and "stopped running the pool manager" in lapsed[0]
    assert any("no longer runs the pool manager" in record.getMessage() for record in caplog.records)
