"""The invariants every reliability scenario checks when it ends."""
from sqlalchemy import select

from vmpooler.db.models import LIVE_STATES, vm_events, vms


def live_rows(db):
    with db.read() as conn:
        return list(conn.execute(select(vms).where(vms.c.state.in_(LIVE_STATES + ("failed",)))))


def assert_database_matches_inventory(db, dummy, pools):
    """After a reconcile pass: no orphan (in the provider, unknown to us) and no phantom (in the
    database, gone from the provider)."""
    in_db = {row.name for row in live_rows(db)}
    in_provider = {info.name for pool in pools for info in dummy.list_vms(pool)}
    assert in_provider - in_db == set(), f"orphans: {sorted(in_provider - in_db)}"
    assert in_db - in_provider == set(), f"phantoms: {sorted(in_db - in_provider)}"


def assert_no_name_live_twice(db):
    names = [row.name for row in live_rows(db)]
    assert len(names) == len(set(names))


def assert_every_checkout_recorded_once(db, handed_out):
    """Each hostname handed out while checked out appears once per checkout in the event log."""
    with db.read() as conn:
        checkouts = [e.vm_name for e in conn.execute(select(vm_events).where(vm_events.c.to_state == "running"))]
    assert sorted(checkouts) == sorted(handed_out)
