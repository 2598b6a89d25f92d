"""Runs provider calls in the bounded thread pool, behind each provider's circuit breaker.

The IOLoop never blocks on a provider: every call goes through ``call`` and is awaited.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
from typing import Any, Callable, Mapping, Optional, TypeVar

from tornado.ioloop import IOLoop

from vmpooler.manager.breaker import CircuitBreaker
from vmpooler.metrics import DISABLED
from vmpooler.providers.base import CircuitOpen, Provider, ProviderError
from vmpooler.settings import Settings

log = logging.getLogger("vmpooler.manager")
T = TypeVar("T")


class Fenced(Exception):
    """This process no longer leads: it must not start provider work (another process's manager
    may act on the same VMs now). Not a provider failure: the work is dropped, not retried."""



def _breaker(name: str, settings: Settings) -> CircuitBreaker:
    return CircuitBreaker(name, threshold=settings.circuit_breaker_failure_threshold,
                          timeout=settings.circuit_breaker_timeout,
                          half_open_successes=settings.circuit_breaker_half_open_attempts,
                          enabled=settings.circuit_breaker_enabled)

class ProviderRunner:
    def __init__(self, providers: dict, settings: Settings, may_act: Callable[[], bool] = lambda: True,
                 metrics=DISABLED, breaker_settings: Optional[Mapping[str, Mapping[str, Any]]] = None):
        """``breaker_settings``: {provider: {circuit_breaker_* key: value}} set in its own section,
        over ``settings``."""
        self.providers = providers
        self.metrics = metrics
        #: asked before every call: false once this process lost the manager's leadership
        self.may_act = may_act
        self.executor = concurrent.futures.ThreadPoolExecutor(settings.provider_threads,
                                                              thread_name_prefix="provider")
        self.breakers = {name: _breaker(name, dataclasses.replace(settings, **(breaker_settings or {}).get(name, {})))
                         for name in providers}

    async def call(self, provider_name: str, operation: Callable[[Provider], T]) -> T:
        """``operation(providers[provider_name])`` in a worker thread, e.g.
        ``await runner.call(pool.provider, lambda p: p.create_vm(pool, name))``. Raises
        ProviderError (CircuitOpen while the provider's breaker refuses calls); anything else a
        provider raises is wrapped, so the manager handles exactly one kind of failure."""
        if not self.may_act():
            raise Fenced(f"not calling provider {provider_name}: this process no longer runs the pool manager")
        breaker = self.breakers[provider_name]
        if not breaker.allow():
            raise CircuitOpen(f"provider {provider_name} is failing; its circuit breaker is open")
        provider = self.metrics.observed(provider_name, self.providers[provider_name])
        try:
            if self.providers[provider_name].answers_at_once:
                result = operation(provider)
            else:
                result = await IOLoop.current().run_in_executor(self.executor, operation, provider)
        except ProviderError as error:
            (breaker.failure if error.transient else breaker.success)()
            raise
        except Exception as error:  # a provider bug: keep the manager alive, record it
            breaker.failure()
            log.exception("provider %s raised unexpectedly", provider_name)
            raise ProviderError(f"provider {provider_name} failed unexpectedly: {error!r}") from error
        breaker.success()
        return result

    def health(self) -> dict:
        report = {}
        for name, provider in self.providers.items():
            try:
                details = dict(provider.health())
            except Exception as error:  # health is informative only
                details = {"error": repr(error)}
            report[name] = {"circuit_breaker": self.breakers[name].describe(), **details}
        return report

    def shutdown(self, wait: bool) -> None:
        self.executor.shutdown(wait=wait, cancel_futures=True)
        for provider in self.providers.values():
            try:
                provider.close()
            except Exception:  # closing is best effort
                log.exception("provider %s: close failed", provider.name)
