"""The invariants every reliability scenario checks when it ends."""
from sqlalchemy import and_, func, select

from vmpooler.auth.tokens import token_hash
from vmpooler.db.models import tokens, vm_events, vm_tags, vms
from vmpooler.model import LIVE_STATES


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


#: the events of checkouts: into running from another state (a running VM's lifetime or tag change
#: is an event from running to running)
CHECKED_OUT = and_(vm_events.c.to_state == "running", vm_events.c.from_state != vm_events.c.to_state)


def assert_no_name_live_twice(db):
    names = [row.name for row in live_rows(db)]
    assert len(names) == len(set(names))


def assert_every_checkout_recorded_once(db, handed_out):
    """Each hostname handed out while checked out appears once per checkout in the event log."""
    with db.read() as conn:
        checkouts = [e.vm_name for e in conn.execute(select(vm_events).where(CHECKED_OUT))]
    assert sorted(checkouts) == sorted(handed_out), f"checked out {sorted(checkouts)}, handed out {sorted(handed_out)}"


def assert_each_vm_checked_out_at_most_once(db):
    """No VM row went to running twice: a VM is never handed to a second job."""
    with db.read() as conn:
        counts = conn.execute(select(vm_events.c.vm_id, func.count()).where(CHECKED_OUT)
                              .group_by(vm_events.c.vm_id).having(func.count() > 1)).all()
    assert counts == [], f"VMs checked out more than once: {counts}"


def assert_live_set_is(db, names):
    """The database's live VMs are exactly ``names`` (a provider's inventory)."""
    in_db = {row.name for row in live_rows(db)}
    names = set(names)
    assert names - in_db == set(), f"orphans: {sorted(names - in_db)}"
    assert in_db - names == set(), f"phantoms: {sorted(in_db - names)}"


class Ledger:
    """What the server acknowledged to one client (2xx answers), recorded client-side so that it can
    be checked against the database afterwards.

    Hostnames are reused once their VM is destroyed, so each acknowledged checkout is a *ticket*
    (its index in ``checkouts``) and changes are recorded per ticket; the database row of a ticket
    is one named like it that was checked out with its token. A VM or token is dropped from
    ``held`` or ``tokens`` before it is deleted (unusable whatever the answer). ``uncertain`` holds
    (ticket, "tags" or "lifetime") whose newest PUT got no answer (the server died): it may or may
    not have been applied, so that value is not checked until a later PUT of it is acknowledged."""

    def __init__(self):
        self.checkouts = []  # ticket -> (hostname, token)
        self.held = {}  # hostname -> ticket, checked out and not deleted
        self.deleted = set()  # tickets
        self.tags = {}  # ticket -> {tag: value} acknowledged
        self.lifetimes = {}  # ticket -> hours acknowledged
        self.tokens = {}  # token -> user, created and not deleted
        self.deleted_tokens = set()
        self.uncertain = set()

    def checked_out(self, hostname, token):
        assert hostname not in self.held, f"{hostname} was handed out while still checked out"
        self.checkouts.append((hostname, token))
        self.held[hostname] = len(self.checkouts) - 1

    def token_of(self, hostname):
        return self.checkouts[self.held[hostname]][1]

    def verify(self, db):
        """Every acknowledged change is in the database (call after the server is gone or idle)."""
        with db.read() as conn:
            checked_out = {e.vm_id for e in conn.execute(select(vm_events.c.vm_id).where(CHECKED_OUT))}
            by_name, latest = {}, {}
            for row in conn.execute(select(vms).order_by(vms.c.id)):
                latest[row.name] = row
                if row.id in checked_out:
                    by_name.setdefault(row.name, []).append(row)
            tags = {}
            for vm_id, name, value in conn.execute(select(vm_tags.c.vm_id, vm_tags.c.name, vm_tags.c.value)):
                tags.setdefault(vm_id, {})[name] = value
            stored_tokens = {row.token_hash for row in conn.execute(select(tokens.c.token_hash))}
        per_name = {}
        for hostname, _token in self.checkouts:
            per_name[hostname] = per_name.get(hostname, 0) + 1
        for hostname, count in per_name.items():
            assert len(by_name.get(hostname, [])) >= count, f"acknowledged checkouts of {hostname} not all recorded"

        def rows_of(ticket):
            hostname, token = self.checkouts[ticket]
            digest = token_hash(token) if token else None
            found = [row for row in by_name.get(hostname, []) if row.token_hash == digest]
            assert found, f"acknowledged checkout of {hostname} is not in the database with its token"
            return found

        for ticket in range(len(self.checkouts)):
            rows_of(ticket)
        for hostname, ticket in self.held.items():
            assert latest[hostname] in rows_of(ticket) and latest[hostname].state == "running", \
                f"{hostname} is {latest[hostname].state}, not running"
        for ticket in self.deleted:
            assert any(row.state in ("completed", "destroyed", "gone") and row.completed_at for row in rows_of(ticket)), \
                f"acknowledged DELETE of {self.checkouts[ticket][0]} lost"
        for ticket, wanted in self.tags.items():
            if (ticket, "tags") not in self.uncertain:
                have = [tags.get(row.id, {}) for row in rows_of(ticket)]
                assert any({k: h.get(k) for k in wanted} == wanted for h in have), \
                    f"{self.checkouts[ticket][0]}: tags {have}, acknowledged {wanted}"
        for ticket, hours in self.lifetimes.items():
            if (ticket, "lifetime") not in self.uncertain:
                assert any(row.lifetime == hours for row in rows_of(ticket)), f"{self.checkouts[ticket][0]}: lifetime lost"
        for token in self.tokens:
            assert token_hash(token) in stored_tokens, f"acknowledged token {token[:8]}... lost"
        for token in self.deleted_tokens:
            assert token_hash(token) not in stored_tokens, f"acknowledged deletion of token {token[:8]}... lost"
