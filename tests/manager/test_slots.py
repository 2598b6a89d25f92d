"""A freed clone slot is used at once (manager/refill.py): clones start as others end, without
waiting for a pass, and still within task_limit, within each pool's size, fair between pools,
never two provider calls for one VM, backing off after failed clones, only while leading.

Passes are 30 s apart here, so that only the first pass (at start) can start clones: everything
after it is the refill's doing. Limits are sampled from inside the provider's calls."""
import asyncio
import threading

from tests.manager.helpers import Manager, REGISTRY, fast_config, rows, running, states, wait_for
from vmpooler.db import stats
from vmpooler.db import checkout as checkout_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import utcnow
from vmpooler.providers.base import TransientError

NO_PASSES = {"check_loop_delay_min": 30, "circuit_breaker_enabled": False}


class Watch:
    """Wraps the dummy provider's calls: counts clones in flight, records which pool each clone
    was for, finds two calls in flight for one VM, and samples the database's pending+ready per
    pool and clones in flight as each clone starts."""

    def __init__(self, dummy, db, task_limit, sizes, failing=()):
        self.db, self.task_limit, self.sizes, self.failing = db, task_limit, sizes, set(failing)
        self.lock = threading.Lock()
        self.cloning = self.peak = 0
        self.busy, self.order, self.problems = set(), [], []
        for method in ("create_vm", "is_ready", "get_vm", "destroy_vm"):
            setattr(dummy, method, self._wrapped(getattr(dummy, method), method == "create_vm"))

    def _wrapped(self, call, is_clone):
        def watched(pool, name, *args):
            with self.lock:
                if name in self.busy:
                    self.problems.append(f"two provider calls in flight for {name}")
                self.busy.add(name)
                if is_clone:
                    self.cloning += 1
                    self.peak = max(self.peak, self.cloning)
                    self.order.append(pool.name)
            try:
                if is_clone:
                    self._sample()
                    if pool.name in self.failing:
                        raise TransientError("the hook fails this pool's clones")
                return call(pool, name, *args)
            finally:
                with self.lock:
                    self.busy.discard(name)
                    self.cloning -= is_clone
        return watched

    def _sample(self):
        if self.cloning > self.task_limit:
            self.problems.append(f"{self.cloning} clones in flight, task_limit {self.task_limit}")
        now = utcnow()  # a failed clone waiting out its backoff holds no slot
        cloning = sum(1 for row in rows(self.db, state="pending")
                      if row.cloned_at is None and (row.next_attempt_at is None or row.next_attempt_at <= now))
        if cloning > self.task_limit:
            self.problems.append(f"{cloning} cloning rows, task_limit {self.task_limit}")
        for pool, size in self.sizes.items():
            counts = states(self.db, pool)
            if counts.get("pending", 0) + counts.get("ready", 0) > size:
                self.problems.append(f"{pool}: {counts} over its size {size}")


def pools(**sizes):
    return [{"name": name, "template": f"t-{name}", "size": size} for name, size in sizes.items()]


def test_freed_slots_fill_the_pools_within_the_limits_without_passes(db):
    sizes = {"a": 24, "b": 12}
    config = fast_config(pools(**sizes), settings={**NO_PASSES, "task_limit": 4}, dummy={"createvm_max_time": 0.01})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            watch = Watch(dummy, db, 4, sizes)  # in place before the first pass (it runs at the next await)
            await wait_for(lambda: states(db, "a").get("ready") == 24 and states(db, "b").get("ready") == 12,
                           timeout=30, what="both pools full")
            return watch
    watch = asyncio.run(scenario())
    assert watch.problems == []
    assert 2 <= watch.peak <= 4
    assert len(watch.order) == 36
    assert states(db) == {"ready": 36}


def test_freed_slots_go_to_each_pool_in_turn(db):
    config = fast_config(pools(a=30, b=30), settings={**NO_PASSES, "task_limit": 2},
                         dummy={"createvm_max_time": 0.005})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            watch = Watch(dummy, db, 2, {"a": 30, "b": 30})
            await wait_for(lambda: states(db).get("ready") == 60, timeout=30, what="both pools full")
            return watch
    watch = asyncio.run(scenario())
    assert watch.problems == []
    both_want = watch.order[:40]  # each pool still lacks VMs throughout these
    for end in range(1, len(both_want) + 1):
        prefix = both_want[:end]
        assert abs(prefix.count("a") - prefix.count("b")) <= 2, prefix


def test_a_failing_pool_backs_off_and_its_slots_go_to_the_others(db):
    settings = {**NO_PASSES, "task_limit": 4, "retry_backoff": 5, "retry_backoff_max": 5}
    config = fast_config(pools(bad=10, good=20), settings=settings, dummy={"createvm_max_time": 0.005})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            watch = Watch(dummy, db, 4, {"bad": 10, "good": 20}, failing={"bad"})
            await wait_for(lambda: states(db, "good").get("ready") == 20, timeout=30, what="the good pool full")
            await asyncio.sleep(0.3)
            return watch
    watch = asyncio.run(scenario())
    assert watch.problems == []
    # the first pass gave "bad" at most its round-robin share; after the failures it backs off
    assert watch.order.count("bad") <= 2
    assert states(db, "bad").get("ready", 0) == 0


def test_no_slot_leaks_after_failed_clones(db):
    settings = {"task_limit": 3, "retry_backoff": 0.01, "retry_backoff_max": 0.02, "check_loop_delay_min": 0.05,
                "circuit_breaker_enabled": False}
    config = fast_config(pools(a=20), settings=settings, dummy={"createvm_fail_percent": 30})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            full = lambda: states(db, "a").get("ready") == 20
            await wait_for(full, timeout=30, what="the pool full despite failed clones")
            await wait_for(lambda: not any(key[0] == "vm" for key in manager.in_flight), what="clones ended")
            counts = stats.pool_counts(db, utcnow())["a"]
            assert counts.clone_slots == 0 and counts.pending == 0
            # every slot is still usable: take away half the pool, it comes back
            for vm in rows(db, state="ready")[:10]:
                vm_store.complete(db, vm, "taken away by the test", utcnow())
            await wait_for(full, timeout=30, what="the pool full again")
    asyncio.run(scenario())


class Lease:
    is_leader = True

    def describe(self):
        return {"leader": self.is_leader}


def test_a_manager_that_stopped_leading_starts_no_clone(db):
    # a's clone fails once the term has ended, freeing a slot that b (still short) would take
    settings = {**NO_PASSES, "task_limit": 2, "retry_backoff": 5, "retry_backoff_max": 5}
    config = fast_config(pools(a=5, b=5), settings=settings)
    lease, fail_a, release_b, entered = Lease(), threading.Event(), threading.Event(), []

    def create_vm(pool, name):
        entered.append(name)
        if pool.name == "a":
            fail_a.wait(10)
            raise TransientError("the hook fails a's clone")
        release_b.wait(10)
        return clone(pool, name)

    async def scenario():
        manager = Manager(config, db, providers, leadership=lease)
        await manager.start()
        await wait_for(lambda: len(entered) == 2, what="the first pass's clones in the provider")
        lease.is_leader = False
        manager.pause()
        fail_a.set()
        await wait_for(lambda: rows(db, pool="a")[0].clone_attempts == 1, what="a's failed clone recorded")
        await asyncio.sleep(0.2)
        release_b.set()
        await manager.stop()
    providers = REGISTRY.build(config)
    clone, providers["dummy"].create_vm = providers["dummy"].create_vm, create_vm
    providers["dummy"].answers_at_once = False  # the hook waits: it must run in a provider thread
    asyncio.run(scenario())
    assert len(rows(db)) == 2


def test_a_checkout_refills_with_a_fill_not_a_pass(db):
    """After a checkout the manager fills the pool in the next IOLoop turn, with no pass (passes
    are 30 s apart); a clone that ends while no pool waits for a slot starts nothing more."""
    config = fast_config(pools(a=3), settings={**NO_PASSES, "task_limit": 10})

    async def scenario():
        async with running(config, db) as (manager, dummy):
            await wait_for(lambda: states(db, "a").get("ready") == 3, timeout=30, what="pool full")
            passes, fills = [], []
            original_pass, original_fill = manager.run_pass, manager.refiller.fill

            async def counted_pass():
                passes.append(1)
                await original_pass()

            async def counted_fill(counts, now):
                fills.append(1)
                await original_fill(counts, now)
            manager.run_pass, manager.refiller.fill = counted_pass, counted_fill
            await db.run(checkout_store.checkout, [checkout_store.Want("a", ("a",), 2)], utcnow(), 24)
            manager.refill()
            await wait_for(lambda: states(db, "a").get("ready") == 3, timeout=10, what="pool refilled")
            await asyncio.sleep(0.2)  # the two clones have ended: neither asks for another fill
            return passes, fills
    passes, fills = asyncio.run(scenario())
    assert passes == [] and fills == [1]
    assert states(db, "a") == {"ready": 3, "running": 2}
