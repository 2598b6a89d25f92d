"""Pools that wait after failed clones, and how a provider that comes back ends their wait.

A pool whose clone failed starts no new clone for a while: ``retry_backoff`` seconds doubling
with its consecutive failures up to ``retry_backoff_max``, or, when the provider's circuit breaker
refused the call, until the breaker lets a trial call through. Waits run on the monotonic clock.

Waiting out ``retry_backoff_max`` after the provider is back would leave pools empty for
minutes, so while a pool of a provider waits, the manager probes the provider whenever its
breaker lets trial calls through: one cheap call (listing a waiting pool's folder), the breaker's
half-open trial. The first success that closes the breaker (its trial calls, the probe's or any
other) ends the wait of every pool of that provider at once (``Backoffs.recovered``); the manager
then retries that provider's clones (as many as ``task_limit`` has free slots) and destroys
waiting in the database, and refills. A clone succeeding ends its own pool's wait.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging

from vmpooler.manager.breaker import CLOSED
from vmpooler.providers.base import CircuitOpen, ProviderError

log = logging.getLogger("vmpooler.manager")


@dataclasses.dataclass
class Wait:
    """Why and until when (monotonic) a pool starts no clone."""
    provider: str
    until: float
    reason: str
    failures: int
    breaker: bool  # waiting for the provider's circuit breaker, not its own backoff


class Backoffs:
    def __init__(self, retry, breakers: dict, clock):
        self.retry, self.breakers, self.clock = retry, breakers, clock
        self.waits: dict = {}  # pool name -> Wait
        self._failures: dict = {}  # pool name -> consecutive failed clones (kept across breaker waits)

    def waiting(self, pool: str) -> bool:
        wait = self.waits.get(pool)
        return wait is not None and self.clock.monotonic() < wait.until

    def failed(self, pool, error: Exception) -> Wait:
        """A clone of ``pool`` failed: its new wait (logged)."""
        now, earlier = self.clock.monotonic(), self.waits.get(pool.name)
        if isinstance(error, CircuitOpen):
            failures = self._failures.get(pool.name, 0)
            seconds = self.breakers[pool.provider].seconds_until_trial()
            reason = f"provider {pool.provider}'s circuit breaker is open"
            if earlier is not None and earlier.until > now + seconds:  # a longer backoff stands (a probe ends it)
                return earlier
        else:
            failures = self._failures[pool.name] = self._failures.get(pool.name, 0) + 1
            seconds = self.retry.backoff(failures)
            reason = f"{failures} clone{'s' if failures > 1 else ''} failed in a row: {error}"
        wait = self.waits[pool.name] = Wait(pool.provider, now + seconds, reason, failures,
                                            isinstance(error, CircuitOpen))
        log.warning("[%s] no new clones for %.1f s (until %s UTC, or until provider %s answers again): %s",
                    pool.name, seconds, f"{self.wall_at(wait.until):%H:%M:%S}", pool.provider, reason)
        return wait

    def succeeded(self, pool: str) -> None:
        """A clone of ``pool`` succeeded: its own wait and count of failures end. (Other pools of
        the provider keep theirs: a pool may fail alone, e.g. its template is broken; the provider
        as a whole is back when its breaker closes.)"""
        self.waits.pop(pool, None)
        self._failures.pop(pool, None)

    def providers_waiting(self) -> dict:
        """{provider: a waiting pool's name} for the providers some pool waits for."""
        now = self.clock.monotonic()
        return {wait.provider: pool for pool, wait in self.waits.items() if wait.until > now}

    def recovered(self, provider: str, why: str) -> list:
        """``provider`` answered again: every pool of it stops waiting. The pools that were waiting."""
        ended = [pool for pool, wait in self.waits.items() if wait.provider == provider]
        for pool in ended:
            del self.waits[pool]
            self._failures.pop(pool, None)
        if ended:
            log.info("provider %s answers again (%s): pools %s clone again", provider, why, ", ".join(sorted(ended)))
        return ended

    def wall_at(self, monotonic: float) -> datetime.datetime:
        return self.clock.wall() + datetime.timedelta(seconds=monotonic - self.clock.monotonic())

    def describe(self) -> dict:
        """{pool: what /status shows} for the pools waiting now."""
        now, shown = self.clock.monotonic(), {}
        for pool, wait in self.waits.items():
            if wait.until > now:
                shown[pool] = {"reason": wait.reason, "until": self.wall_at(wait.until), "provider": wait.provider,
                               "failures": wait.failures, "waiting_for": "circuit breaker" if wait.breaker
                               else "backoff"}
        return shown


async def probe(manager, provider: str, pool_name: str) -> None:
    """The breaker's trial calls, made by the manager itself while pools wait: list a waiting
    pool's folder until the breaker closes (it then calls ``manager.provider_back``) or a call
    fails (the breaker opens again)."""
    breaker, pool = manager.runner.breakers[provider], manager.pools[pool_name]
    for _ in range(breaker.half_open_successes):
        if breaker.state == CLOSED or not breaker.allow():
            return
        try:
            await manager.runner.call(provider, lambda p: p.list_vms(pool))
        except ProviderError as error:
            log.info("provider %s: probe failed, circuit breaker %s: %s", provider, breaker.state, error)
            return


def probe_waiting(manager) -> None:
    """Launch a probe for each provider a pool waits for whose breaker lets trial calls through now."""
    for provider, pool_name in manager.backoffs.providers_waiting().items():
        breaker = manager.runner.breakers[provider]
        if breaker.state != CLOSED and breaker.allow():
            manager.launch(("probe", provider), probe(manager, provider, pool_name))

