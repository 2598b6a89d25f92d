"""Model-based test of the state layer (hypothesis stateful testing): random sequences of the
API's and the manager's actions, some with stale reads as in real races, checked after every
step against a plain model of what each VM's state must be."""
import itertools
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import select

from tests.conftest import make_config, new_vm
from vmpooler.db import checkout as checkout_store
from vmpooler.db import client_changes
from vmpooler.db import vms as vm_store
from vmpooler.db.database import Database, utcnow
from vmpooler.db.models import metadata, vm_events, vms
from vmpooler.db.checkout import Shortfall, Want
from vmpooler.model import LIVE_STATES

POOLS = make_config(pools=[{"name": "p", "template": "t", "size": 3},
                           {"name": "q", "template": "t", "size": 3}]).pools


class StateLayer(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.db = Database(f"sqlite:///{self.directory.name}/model.db")
        metadata.create_all(self.db.engine)  # migrations are tested elsewhere; this is faster
        self.model = {}  # name -> (pool, state)
        self.stale = {}  # name -> a row read earlier (what a slow actor saw)
        self.names = itertools.count()

    def teardown(self):
        self.db.dispose()
        self.directory.cleanup()

    def _row(self, name):
        with self.db.read() as conn:
            return conn.execute(select(vms).where(vms.c.name == name).order_by(vms.c.id.desc())).first()

    def _in(self, *states):
        return sorted(n for n, (_, s) in self.model.items() if s in states)

    @rule(pool=st.sampled_from(POOLS))
    def clone(self, pool):
        name = f"vm{next(self.names)}"
        assert new_vm(self.db, pool, name, utcnow()) is not None
        self.model[name] = (pool.name, "pending")

    @precondition(lambda self: self._in("pending"))
    @rule(data=st.data())
    def boot(self, data):
        name = data.draw(st.sampled_from(self._in("pending")))
        assert vm_store.cloned(self.db, self._row(name), utcnow())
        assert vm_store.became_ready(self.db, self._row(name), utcnow())
        self.model[name] = (self.model[name][0], "ready")

    @rule(p=st.integers(0, 3), q=st.integers(0, 3))
    def checkout(self, p, q):
        wants = [Want(name, (name,), count) for name, count in (("p", p), ("q", q)) if count]
        ready = {pool: [n for n in self._in("ready") if self.model[n][0] == pool] for pool in ("p", "q")}
        enough = all(len(ready[w.requested]) >= w.count for w in wants)
        try:
            taken = checkout_store.checkout(self.db, wants, utcnow(), 24)
        except Shortfall:
            assert not enough
            return
        assert enough
        for pool, vms in taken.items():
            names = [vm.name for vm in vms]
            assert len(names) == len(set(names)) and {vm.pool for vm in vms} <= {pool}
            for name in names:
                assert self.model[name] == (pool, "ready")
                self.model[name] = (pool, "running")

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remember(self, data):
        """A slow actor reads a VM now and acts on it later."""
        name = data.draw(st.sampled_from(sorted(self.model)))
        self.stale[name] = self._row(name)

    @precondition(lambda self: self.stale)
    @rule(data=st.data(), action=st.sampled_from(["complete", "delete", "gone"]))
    def act_on_stale_read(self, data, action):
        name = data.draw(st.sampled_from(sorted(self.stale)))
        row = self.stale.pop(name)
        pool, state = self.model[name]
        if action == "delete":
            changed = client_changes.delete(self.db, row, utcnow()) is not None
            expected = row.state == state == "running"
            new = "completed"
        elif action == "complete":
            changed = vm_store.complete(self.db, row, "test", utcnow())
            expected = row.state == state and state in ("pending", "ready", "running")
            new = "completed"
        else:
            changed = vm_store.gone(self.db, row, "test", utcnow())
            expected = row.state == state and state in LIVE_STATES
            new = "gone"
        assert changed == expected, (action, row.state, state)
        if changed:
            self.model[name] = (pool, new)

    @precondition(lambda self: self._in("completed"))
    @rule(data=st.data())
    def destroy(self, data):
        name = data.draw(st.sampled_from(self._in("completed")))
        assert vm_store.destroyed(self.db, self._row(name), utcnow())
        self.model[name] = (self.model[name][0], "destroyed")

    @invariant()
    def database_matches_model(self):
        with self.db.read() as conn:
            actual = {r.name: (r.pool, r.state) for r in conn.execute(select(vms))}
            live = [r.live_name for r in conn.execute(select(vms.c.live_name)) if r.live_name]
            last = {}
            for event in conn.execute(select(vm_events).order_by(vm_events.c.id)):
                last[event.vm_name] = event.to_state
        assert actual == self.model
        assert len(live) == len(set(live))
        assert set(live) == set(self._in(*LIVE_STATES))
        assert last == {name: state for name, (_, state) in self.model.items()}


StateLayer.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestStateLayer = StateLayer.TestCase
