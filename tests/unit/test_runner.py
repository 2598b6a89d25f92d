"""Provider calls through the runner: typed (a closure over the provider), in the thread pool,
with every failure a ProviderError and the circuit breaker counting them."""
import asyncio
import threading

import pytest

from tests.conftest import make_config
from vmpooler.manager.runner import ProviderRunner
from vmpooler.providers.base import CircuitOpen, PermanentError, ProviderError, TransientError
from vmpooler.providers.registry import REGISTRY


@pytest.fixture
def runner():
    config = make_config(pools=[{"name": "p", "template": "t", "size": 1}],
                         settings={"circuit_breaker_failure_threshold": 2, "circuit_breaker_timeout": 60})
    runner = ProviderRunner(REGISTRY.build(config), config.settings)
    runner.pool = config.pools[0]
    yield runner
    runner.shutdown(wait=True)


def _thread_of_call(runner) -> str:
    seen = {}

    def create(provider):
        seen.update(provider=provider.name, thread=threading.current_thread().name)
        return provider.create_vm(runner.pool, "vm1")

    info = asyncio.run(runner.call("dummy", create))
    assert info.name == "vm1" and seen["provider"] == "dummy"
    assert asyncio.run(runner.call("dummy", lambda p: p.is_ready(runner.pool, "vm1"))) is True
    return seen["thread"]


def test_the_closure_gets_the_provider_in_a_worker_thread(runner):
    runner.providers["dummy"].answers_at_once = False  # as with any delay, or an inventory file
    assert _thread_of_call(runner).startswith("provider")


def test_a_provider_that_answers_at_once_is_called_on_the_ioloop(runner):
    """The dummy in memory without delays: a thread hand-off would cost more than the call."""
    assert runner.providers["dummy"].answers_at_once
    assert _thread_of_call(runner) == threading.current_thread().name


@pytest.mark.parametrize("knobs", [{"createvm_max_time": 0.01}, {"destroyvm_max_shutdown_time": 1},
                                   {"filename": "inventory.json"}])
def test_a_dummy_that_waits_or_writes_a_file_is_called_in_a_thread(knobs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = make_config(pools=[{"name": "p", "template": "t", "size": 1}], providers={"dummy": knobs})
    assert not REGISTRY.build(config)["dummy"].answers_at_once


def test_errors_are_provider_errors_and_open_the_breaker(runner):
    with pytest.raises(PermanentError):  # permanent: the backend answered, the breaker does not count it
        asyncio.run(runner.call("dummy", lambda p: p.revert_snapshot(runner.pool, "missing", "s")))
    assert runner.breakers["dummy"].failures == 0

    def bug(provider):
        raise KeyError("oops")

    with pytest.raises(ProviderError, match="provider dummy failed unexpectedly: KeyError"):
        asyncio.run(runner.call("dummy", bug))
    assert runner.breakers["dummy"].state == "closed" and runner.breakers["dummy"].failures == 1

    def down(provider):
        raise TransientError("down")

    with pytest.raises(TransientError):
        asyncio.run(runner.call("dummy", down))
    assert runner.breakers["dummy"].state == "open"
    called = []
    with pytest.raises(CircuitOpen):
        asyncio.run(runner.call("dummy", called.append))
    assert called == []  # an open breaker does not reach the provider
