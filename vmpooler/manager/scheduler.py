"""The pool manager: periodic passes on the server's IOLoop that keep every pool full.

A pass is quick and never waits on a provider: it reads what is due (a fixed number of
queries), changes states directly where no provider is needed, and *launches* provider work
(clone, probe, destroy, task, inventory) as background coroutines keyed by what they act on,
so the same VM never has two provider calls in flight. Each loop lives in its own module.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Any, Coroutine, Dict, List, Optional, Protocol, Set, Tuple

from tornado.ioloop import IOLoop, PeriodicCallback

from vmpooler.db import idempotency, retries, stats
from vmpooler.db import tasks as task_store
from vmpooler.db import vms as vm_store
from vmpooler.db.database import Database, StoreUnavailable, utcnow
from vmpooler.manager import checks, destroy, ondemand, overrides, queues, reconcile, replenish, tasks
from vmpooler.manager.backoff import Backoffs
from vmpooler.manager.clock import Clock, StepWatch
from vmpooler.manager.coalesce import Coalesced
from vmpooler.manager.leader import Leadership
from vmpooler.manager.records import Records
from vmpooler.manager.refill import Refiller
from vmpooler.manager.retry import RetryPolicy
from vmpooler.manager.runner import Fenced, ProviderRunner
from vmpooler.metrics import DISABLED, Hooks
from vmpooler.model import DeadLetter, DeadLetterQueue, PoolConfig, VMRow
from vmpooler.settings import Settings
from vmpooler.providers.base import Provider

log = logging.getLogger("vmpooler.manager")

LOOPS = (overrides, checks, destroy, ondemand, replenish, tasks, queues)  # ondemand before replenish: clients first
#: woken passes come at most this often (seconds), so a burst of checkouts costs a few passes, not one each
WAKE_INTERVAL = 0.05
#: seconds without passes after the database was found unavailable (locked, full, read-only)
STORE_PAUSE = 2.0
#: the manager is stalled (GET /healthcheck answers 503) when no pass finished for this many
#: intervals, and at least STALL_SECONDS (more than one STORE_PAUSE)
STALL_INTERVALS, STALL_SECONDS = 5, 3.0
#: what provider work acts on, so that one thing never has two calls in flight: ("vm", name),
#: ("inventory", pool), ("purge", provider), ...
WorkKey = Tuple[str, str]


class Decided(Protocol):
    """What work was decided from (a pass, the VMs given back): rows read at ``read_at``."""

    read_at: float


class ManagerConfig(Protocol):
    """What the manager reads of the configuration (``config.Config`` is one): it is handed a
    loaded configuration and never loads one (the manager does not import config.py)."""

    settings: Settings
    pools: list
    providers: dict  # name -> model.ProviderConfig


class Pass:
    """What one pass reads once and hands to every loop (``await loop.run(manager, work)``): its
    time, and the pending VMs, which both ``checks`` (boot, timeout) and ``replenish`` (clone
    retries) go through. A loop that retires a pending VM takes it out (``settled``)."""

    def __init__(self, now: datetime.datetime, pending: List[VMRow], read_at: float = 0.0,
                 clock_confirmed: bool = True):
        self.now = now
        self.pending = pending
        #: the wall clock did not step since the last pass (manager/clock.py): only then may the
        #: loops destroy VMs for their lifetime, ready_ttl or timeout (or fail on-demand requests)
        self.clock_confirmed = clock_confirmed
        #: time.monotonic() before the pass read anything: provider work on a VM that ended after
        #: it may have changed the row the pass holds, so the pass leaves that VM to the next one
        self.read_at = read_at

    @classmethod
    async def read(cls, db: Database, clock: Clock = Clock(), watch: Optional[StepWatch] = None) -> "Pass":
        read_at, now = time.monotonic(), clock.wall()
        return cls(now, await db.run(vm_store.pending), read_at, watch.confirmed(now) if watch else True)

    def settled(self, vm: VMRow) -> None:
        self.pending[:] = [row for row in self.pending if row.id != vm.id]


class Manager:
    """``config``: the loaded configuration (config.Config: handed in, not imported by the manager).
    ``leadership`` (manager/leader.py): when several processes share the database, only the one
    holding the lease acts; None for a manager that is alone by construction (tests).
    ``dns_plugins``: {name under :dns_configs: -> DnsPlugin}, built by the service from the DNS
    registry as the providers are (none: no pool's records are kept)."""

    def __init__(self, config: ManagerConfig, db: Database, providers: Dict[str, Provider],
                 leadership: Optional[Leadership] = None, metrics: Hooks = DISABLED, dns_plugins=None,
                 clock: Clock = Clock()):
        self.config = config
        self.settings = config.settings
        self.db = db
        self.leadership = leadership
        self.metrics = metrics
        self.runner = ProviderRunner(providers, config.settings, may_act=self.acting, metrics=metrics,
                                     breaker_settings={name: entry.breaker for name, entry in config.providers.items()})
        self.retry = RetryPolicy.from_settings(config.settings, self.runner.breakers)
        self.clock = clock
        self.step_watch = StepWatch(clock)
        for breaker in self.runner.breakers.values():
            breaker.on_closed = lambda name: self.provider_back(name, "its circuit breaker closed")
        self.records = Records(dns_plugins or {}, self.runner.executor, self.acting)
        self.pools: Dict[str, PoolConfig] = {pool.name: pool for pool in config.pools}
        self.in_flight: Dict[WorkKey, asyncio.Future] = {}
        #: the one owner of refilling: clone slots, their round-robin, each pool's wait, the lock
        self.refiller = Refiller(self)
        #: the clones that end in one IOLoop turn are recorded in one transaction (manager/coalesce.py)
        self.record_clone = Coalesced(db, vm_store.cloned_many)
        self.record_destroy = Coalesced(db, vm_store.destroyed_many)
        #: VMs clients gave back, destroyed without waiting for a pass
        self.returns = destroy.Returns(self)
        self._ended: Dict[WorkKey, float] = {}  # time.monotonic() when its last work ended
        #: pending VM's id -> why its last readiness probe said no (the timeout's cause)
        self.not_ready: Dict[int, str] = {}
        #: pending VMs' ids whose coming timeout was warned about (timeout_notification)
        self.timeout_warned: Set[int] = set()
        #: what manager/queues.py does next, by its name: time.monotonic() when it is due
        self.queue_timers: Dict[str, float] = {}
        self.next_reconcile = 0.0
        self.paused_until = 0.0  # set when the database was unavailable
        self._callback: Optional[PeriodicCallback] = None
        self._pass: Optional[asyncio.Future] = None  # the pass running now
        self._again = False
        self._wake_pending = False
        self._last_tick = 0.0
        self._stopping = False
        self.last_pass_at = time.monotonic()  # when the last pass finished (start counts as one)

    def acting(self) -> bool:
        """May this manager act now (change state, start provider work)?"""
        return self.leadership is None or self.leadership.is_leader

    def may_start_work(self) -> bool:
        """May a pass or a refill start now: not stopping, the database not found unavailable
        lately, and this process leading."""
        return not self._stopping and time.monotonic() >= self.paused_until and self.acting()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Reconcile with every provider, then run passes every check_loop_delay_min seconds.
        Run at every start of a term as leader: the previous leader may have left work half done."""
        self.pause()
        if not self.acting():
            return
        await self.db.run(stats.sync_pools, self.config.pools, utcnow())
        await overrides.refresh(self)
        requeued = await self.db.run(task_store.requeue_interrupted)
        if requeued:
            log.info("requeued %d tasks interrupted by the last stop", requeued)
        await asyncio.gather(*(reconcile.reconcile_pool(self, pool) for pool in self.pools.values()))
        await asyncio.gather(*(reconcile.purge_provider(self, name) for name in self.runner.providers))
        self.next_reconcile = time.monotonic() + self.settings.reconcile_interval
        if not self.acting() or self._stopping:
            return  # the term ended while reconciling
        self._callback = PeriodicCallback(self.tick, self.settings.check_loop_delay_min * 1000)
        self._callback.start()
        self.tick()

    def pause(self) -> None:
        """Stop passes (leadership lost). Provider work in flight finishes in its thread, but every
        further provider call is refused (Fenced) and what it still writes is guarded by state."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    async def stop(self) -> None:
        """Stop passes; give work in flight ``shutdown_grace`` seconds, then abandon it (the next
        start reconciles whatever it left half done)."""
        self._stopping = True
        if self._callback is not None:
            self._callback.stop()
        if self._pass is not None:
            await asyncio.wait([self._pass])
        pending = [task for task in self.in_flight.values() if not task.done()]
        if pending:
            log.info("waiting up to %ss for %d provider calls", self.settings.shutdown_grace, len(pending))
            done, still = await asyncio.wait(pending, timeout=self.settings.shutdown_grace)
            for task in still:
                task.cancel()
            if still:
                log.warning("abandoned %d provider calls; they are reconciled at the next start", len(still))
        self.runner.shutdown(wait=False)
        self.records.close()

    def _running(self) -> bool:
        """Started (start reconciles first) and not stopping."""
        return self._callback is not None and not self._stopping

    def wake(self) -> None:
        """Ask for a pass soon (after a delete, a task, a request): at most one queued at a
        time, and not sooner than WAKE_INTERVAL after the last pass."""
        if not self._running() or self._wake_pending:
            return
        self._wake_pending = True
        delay = max(0.0, self._last_tick + WAKE_INTERVAL - time.monotonic())
        IOLoop.current().call_later(delay, self.tick)

    def refill(self) -> None:
        """Fill the pools in the next IOLoop turn (a checkout took VMs): a fill, not a pass."""
        if self._running():
            self.refiller.fill_soon()

    def destroy_soon(self, vm) -> None:
        """Destroy ``vm``, completed by a client's DELETE, within destroy.RETURN_INTERVAL: not a pass."""
        if self._running():
            self.returns.add(vm)

    # -- a pass ----------------------------------------------------------------------------
    def tick(self) -> None:
        """Start a pass unless one is running (a pass waits on the database, never the IOLoop)."""
        self._wake_pending = False
        if self._pass is not None and not self._pass.done():
            self._again = True  # asked for while one runs: another follows it
            return
        self._pass = asyncio.ensure_future(self._pass_then_again())

    async def _pass_then_again(self) -> None:
        try:
            await self.run_pass()
        finally:
            if self._again:
                self._again = False
                self.wake()

    async def run_pass(self) -> None:
        """One pass: read what is due, let every loop act on it."""
        self._last_tick = time.monotonic()
        if not self.acting():
            self.last_pass_at = self._last_tick  # standing by is up to date: no stall on taking over
        if not self.may_start_work():
            return
        try:
            work = await Pass.read(self.db, self.clock, self.step_watch)
        except StoreUnavailable as error:
            self.database_unavailable("the", error)
            return
        # what ended before this pass read cannot make its rows stale (nor any later pass's)
        self._ended = {key: at for key, at in self._ended.items() if at >= work.read_at}
        finished = True
        for loop in LOOPS:
            try:
                await loop.run(self, work)
            except StoreUnavailable as error:
                self.database_unavailable(loop.__name__.rsplit(".", 1)[-1], error)
                return
            except Exception:  # a bug in one loop must not stop the others
                log.exception("%s pass failed", loop.__name__)
                finished = False
        if finished:
            self.last_pass_at = time.monotonic()
        self.metrics.manager_pass(time.monotonic() - self._last_tick)
        if time.monotonic() >= self.next_reconcile:
            self.next_reconcile = time.monotonic() + self.settings.reconcile_interval
            for pool in self.pools.values():
                self.launch(("inventory", pool.name), reconcile.reconcile_pool(self, pool))
            for name in self.runner.providers:
                self.launch(("purge", name), reconcile.purge_provider(self, name))
            self.launch(("purge", "idempotency keys"), self.db.run(idempotency.purge, utcnow()))

    def database_unavailable(self, what: str, error: Exception) -> None:
        """The database is unavailable: every query would wait out its timeout, so no passes nor
        refills for a while (the API's requests get the database meanwhile)."""
        self.paused_until = time.monotonic() + STORE_PAUSE
        log.warning("%s pass skipped, pausing %ss: %s", what, STORE_PAUSE, error)

    def launch(self, key: WorkKey, coroutine: Coroutine[Any, Any, Any], work: Optional[Decided] = None) -> bool:
        """Run ``coroutine`` in the background unless work on ``key`` is already in flight, or,
        for work decided from rows read at ``work.read_at`` (a pass's), ended after that (the rows
        are stale: a pass waits on the database, so work can end while it runs)."""
        stale = work is not None and self._ended.get(key, float("-inf")) >= work.read_at
        if key in self.in_flight or self._stopping or stale or not self.acting():
            coroutine.close()
            return False
        task = asyncio.ensure_future(self._guarded(key, coroutine))
        self.in_flight[key] = task
        return True

    async def _guarded(self, key: WorkKey, coroutine: Coroutine[Any, Any, Any]) -> None:
        try:
            await coroutine
        except StoreUnavailable as error:
            self.paused_until = time.monotonic() + STORE_PAUSE
            log.warning("%s: %s; will retry", key, error)
        except Fenced as fenced:
            log.info("%s dropped: %s", key, fenced)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", key)
        finally:
            self.in_flight.pop(key, None)
            self._ended[key] = time.monotonic()

    def provider_back(self, provider: str, why: str) -> None:
        """``provider`` answers again (its circuit breaker closed): every pool of it stops waiting,
        its clones (within ``task_limit``) and destroys waiting for a retry are due now, and the
        pools refill."""
        self.refiller.backoffs.recovered(provider, why)
        if self.acting() and not self._stopping:
            self.launch(("retry now", provider), self._retry_now(provider, f"provider {provider} answers again "
                                                                          f"({why}): retrying now"))

    async def _retry_now(self, provider: str, reason: str) -> None:
        now = self.clock.wall()
        async with self.refiller.counted(now) as counts:  # the free slots and the retries made due are one step
            free = self.refiller.free_slots(counts)
            await self.db.run(retries.retry_now, provider, now, reason, max(free, 0))
        self.wake()
        self.refill()

    def dead_letter(self, queue: DeadLetterQueue, error_class: str, message: str) -> Optional[DeadLetter]:
        """The dead letter a VM retired for a failure gets, or None with dlq_enabled off."""
        return DeadLetter(queue, error_class, message) if self.settings.dlq_enabled else None

    def dead_letter_class(self, error: Exception) -> Optional[str]:
        """The class a clone given up for ``error`` is recorded with, or None with dlq_enabled off."""
        return type(error).__name__ if self.settings.dlq_enabled else None

    @property
    def backoffs(self) -> Backoffs:
        """The pools waiting after failed clones (the refiller's: /status and tests read them)."""
        return self.refiller.backoffs

    def busy(self, name: str) -> bool:
        return ("vm", name) in self.in_flight

    def health(self) -> dict:
        return self.runner.health()

    def leader(self) -> dict:
        """Which process runs the manager, for /status and the health check."""
        if self.leadership is None:
            return {"leader": True}
        return self.leadership.describe()

    def stalled(self) -> Optional[str]:
        """Why the manager is not doing its work (for GET /healthcheck), or None while it is."""
        interval = self.settings.check_loop_delay_min
        age = time.monotonic() - self.last_pass_at
        if self._stopping or not self.acting() or age <= max(STALL_INTERVALS * interval, STALL_SECONDS):
            return None
        return (f"the pool manager has not finished a pass for {age:.0f} seconds (one is due every "
                f"{interval:g} seconds)")
